#ifndef BOARD_H_STUB
#define BOARD_H_STUB
void BOARD_InitHardware(void);
#endif
