#ifndef RSC_TABLE_H_STUB
#define RSC_TABLE_H_STUB
void copyResourceTable(void);
#endif
