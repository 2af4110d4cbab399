#ifndef PIN_MUX_H_STUB
#define PIN_MUX_H_STUB
void BOARD_InitBootPins(void);
#endif
