# i.MX 95 Cortex-M7 image of the edgevla firmware (RPMsg-lite link, LPUART servo bus).
# Invoked by `make -C mcu imx95 SDK_DIR=...`; see ports/imx95/README.md. Paths follow the
# MCUXpresso SDK package layout for MIMX9596 (override any of them on the command line).

SDK_DIR    ?= $(error set SDK_DIR to the MCUXpresso SDK for the i.MX 95)
BOARD      ?= imx95lpd5evk19
DEVICE     ?= MIMX9596
CORE       ?= cm7
DEVICE_DIR ?= $(SDK_DIR)/devices/$(DEVICE)
BOARD_DIR  ?= $(SDK_DIR)/boards/$(BOARD)
EXAMPLE_DIR ?= $(BOARD_DIR)/multicore_examples/rpmsg_lite_str_echo_rtos/$(CORE)
RPMSG_DIR  ?= $(SDK_DIR)/middleware/multicore/rpmsg_lite
CMSIS_DIR  ?= $(SDK_DIR)/CMSIS/Core/Include
LDSCRIPT   ?= $(DEVICE_DIR)/gcc/$(DEVICE)xxxxN_$(CORE)_ram.ld
OUT        := build/imx95

ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
ARM_OBJCOPY ?= arm-none-eabi-objcopy

need_dirs := $(DEVICE_DIR) $(BOARD_DIR) $(EXAMPLE_DIR) $(RPMSG_DIR) $(CMSIS_DIR)
missing := $(strip $(foreach d,$(need_dirs),$(if $(wildcard $(d)),,$(d))))
ifneq ($(missing),)
$(error MCUXpresso SDK folders not found: $(missing) -- check SDK_DIR/BOARD or set the *_DIR variables, see ports/imx95/README.md)
endif

EVLA_SRC := core/evla_proto.c core/evla_motion.c core/evla_feetech.c core/evla_fw.c ports/imx95/main.c
RPMSG_SRC := $(RPMSG_DIR)/lib/rpmsg_lite/rpmsg_lite.c $(RPMSG_DIR)/lib/rpmsg_lite/rpmsg_ns.c \
             $(RPMSG_DIR)/lib/common/llist.c $(RPMSG_DIR)/lib/virtio/virtqueue.c \
             $(RPMSG_DIR)/lib/rpmsg_lite/porting/environment/rpmsg_env_bm.c \
             $(RPMSG_DIR)/lib/rpmsg_lite/porting/platform/imx95_m7/rpmsg_platform.c
SDK_SRC := $(DEVICE_DIR)/system_$(DEVICE)_$(CORE).c $(DEVICE_DIR)/gcc/startup_$(DEVICE)_$(CORE).S \
           $(DEVICE_DIR)/drivers/fsl_common.c $(DEVICE_DIR)/drivers/fsl_common_arm.c \
           $(DEVICE_DIR)/drivers/fsl_clock.c $(DEVICE_DIR)/drivers/fsl_lpuart.c \
           $(DEVICE_DIR)/drivers/fsl_mu.c \
           $(wildcard $(EXAMPLE_DIR)/board.c $(EXAMPLE_DIR)/clock_config.c $(EXAMPLE_DIR)/pin_mux.c \
                      $(EXAMPLE_DIR)/hardware_init.c $(EXAMPLE_DIR)/rsc_table.c)

CFLAGS := -std=gnu11 -Wall -Wextra -Os -g -mcpu=cortex-m7 -mthumb -mfpu=fpv5-sp-d16 \
          -mfloat-abi=hard -fno-math-errno -ffunction-sections -fdata-sections \
          -DCPU_$(DEVICE)AVZXN_$(CORE) -DSDK_OS_BAREMETAL -DRL_USE_ENVIRONMENT_CONTEXT=0 \
          -Icore -Iports/imx95 -I$(EXAMPLE_DIR) -I$(BOARD_DIR) -I$(DEVICE_DIR) \
          -I$(DEVICE_DIR)/drivers -I$(CMSIS_DIR) -I$(RPMSG_DIR)/lib/include \
          -I$(RPMSG_DIR)/lib/include/platform/imx95_m7 -I$(RPMSG_DIR)/lib/include/environment/bm
# the SDK's own sources are not held to the firmware core's -Werror
CORE_CFLAGS := -Werror -Wshadow -Wdouble-promotion
LDFLAGS := -mcpu=cortex-m7 -mthumb -mfpu=fpv5-sp-d16 -mfloat-abi=hard -T $(LDSCRIPT) \
           -Wl,--gc-sections -Wl,-Map=$(OUT)/edgevla-fw.map --specs=nano.specs --specs=nosys.specs

all: $(OUT)/edgevla-fw.bin

$(OUT)/edgevla-fw.elf: $(EVLA_SRC) $(RPMSG_SRC) $(SDK_SRC) $(wildcard core/*.h ports/imx95/*.h)
	mkdir -p $(OUT)
	$(ARM_CC) $(CFLAGS) $(CORE_CFLAGS) -fsyntax-only $(EVLA_SRC)
	$(ARM_CC) $(CFLAGS) -o $@ $(EVLA_SRC) $(RPMSG_SRC) $(SDK_SRC) $(LDFLAGS) -lm
	$(ARM_SIZE) $@

$(OUT)/edgevla-fw.bin: $(OUT)/edgevla-fw.elf
	$(ARM_OBJCOPY) -O binary $< $@

.PHONY: all
