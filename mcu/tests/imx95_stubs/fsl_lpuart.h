#ifndef FSL_LPUART_H_STUB
#define FSL_LPUART_H_STUB
#include "fsl_common.h"
typedef struct { volatile uint32_t DATA; } LPUART_Type;
#define LPUART3 ((LPUART_Type *)0x42570000u)
typedef struct {
    uint32_t baudRate_Bps;
    bool enableTx;
    bool enableRx;
} lpuart_config_t;
enum { kLPUART_RxDataRegFullFlag = 1u << 21 };
enum { kLPUART_RxDataRegFullInterruptEnable = 1u << 21 };
void LPUART_GetDefaultConfig(lpuart_config_t *config);
status_t LPUART_Init(LPUART_Type *base, const lpuart_config_t *config, uint32_t srcClock_Hz);
status_t LPUART_WriteBlocking(LPUART_Type *base, const uint8_t *data, size_t length);
uint32_t LPUART_GetStatusFlags(LPUART_Type *base);
uint8_t LPUART_ReadByte(LPUART_Type *base);
void LPUART_EnableInterrupts(LPUART_Type *base, uint32_t mask);
#endif
