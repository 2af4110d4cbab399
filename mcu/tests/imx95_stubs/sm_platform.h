#ifndef SM_PLATFORM_H_STUB
#define SM_PLATFORM_H_STUB
void SM_Platform_Init(void);
#endif
