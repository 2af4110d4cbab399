#ifndef FSL_COMMON_H_STUB
#define FSL_COMMON_H_STUB
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
typedef int32_t status_t;
typedef enum { LPUART3_IRQn = 64 } IRQn_Type;
typedef struct { volatile uint32_t CTRL, LOAD, VAL, CALIB; } SysTick_Type;
#define SysTick ((SysTick_Type *)0xE000E010u)
extern uint32_t SystemCoreClock;
uint32_t SysTick_Config(uint32_t ticks);
status_t EnableIRQ(IRQn_Type irq);
void __disable_irq(void);
void __enable_irq(void);
void __WFI(void);
#define SDK_ISR_EXIT_BARRIER __asm volatile("dsb")
#endif
