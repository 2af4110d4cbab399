# i.MX 95 Cortex-M7 image of the edgevla firmware (RPMsg-lite link, LPUART servo bus).
# Invoked by `make -C mcu imx95 SDK_DIR=...`; see ports/imx95/README.md.
#
# SDK_DIR is an MCUXpresso SDK laid out as the GitHub workspace (`west init -m
# https://github.com/nxp-mcuxpresso/mcuxsdk-manifests`): mcuxsdk-core at SDK_DIR, with
# devices/i.MX, components, examples, arch/arm/CMSIS, middleware/multicore/{rpmsg-lite,remoteproc}
# under it (ports/imx95/check_sdk_build.sh lists the repositories). Any folder can be moved
# with its *_DIR variable on the command line.

SDK_DIR    ?= $(error set SDK_DIR to the MCUXpresso SDK for the i.MX 95)
BOARD      ?= imx95lpd5evk19
DEVICE     ?= MIMX9596
CORE       ?= cm7
FAMILY_DIR ?= $(SDK_DIR)/devices/i.MX/i.MX95
DEVICE_DIR ?= $(FAMILY_DIR)/$(DEVICE)
PERIPH_DIR ?= $(FAMILY_DIR)/periph
DRIVERS_DIR ?= $(SDK_DIR)/drivers
COMPONENTS_DIR ?= $(SDK_DIR)/components
BOARD_DIR  ?= $(SDK_DIR)/examples/_boards/$(BOARD)
# pin_mux.c/.h of the bare RPMsg example (muxes the M7 LPUART3 pins)
EXAMPLE_DIR ?= $(BOARD_DIR)/multicore_examples/rpmsg_lite_str_echo_rtos/remote/$(CORE)
RPMSG_DIR  ?= $(SDK_DIR)/middleware/multicore/rpmsg-lite
REMOTEPROC_DIR ?= $(SDK_DIR)/middleware/multicore/remoteproc
CMSIS_DIR  ?= $(SDK_DIR)/arch/arm/CMSIS/Core/Include
LDSCRIPT   ?= $(DEVICE_DIR)/gcc/$(DEVICE)xxxxN_$(CORE)_ram.ld
OUT        := build/imx95

ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
ARM_OBJCOPY ?= arm-none-eabi-objcopy

need_dirs := $(DEVICE_DIR) $(PERIPH_DIR) $(DRIVERS_DIR) $(COMPONENTS_DIR) $(BOARD_DIR) \
             $(EXAMPLE_DIR) $(RPMSG_DIR) $(REMOTEPROC_DIR) $(CMSIS_DIR)
missing := $(strip $(foreach d,$(need_dirs),$(if $(wildcard $(d)),,$(d))))
ifneq ($(missing),)
$(error MCUXpresso SDK folders not found: $(missing) -- check SDK_DIR/BOARD or set the *_DIR variables, see ports/imx95/README.md)
endif

EVLA_SRC := core/evla_proto.c core/evla_motion.c core/evla_feetech.c core/evla_fw.c ports/imx95/main.c
RPMSG_SRC := $(RPMSG_DIR)/lib/rpmsg_lite/rpmsg_lite.c $(RPMSG_DIR)/lib/rpmsg_lite/rpmsg_ns.c \
             $(RPMSG_DIR)/lib/common/llist.c $(RPMSG_DIR)/lib/virtio/virtqueue.c \
             $(RPMSG_DIR)/lib/rpmsg_lite/porting/environment/rpmsg_env_bm.c \
             $(RPMSG_DIR)/lib/rpmsg_lite/porting/platform/imx95_m7/rpmsg_platform.c
# The M7 reaches clocks and pads through the System Manager (SCMI over MU5), hence sm/scmi/smt.
SDK_SRC := $(DEVICE_DIR)/system_$(DEVICE)_$(CORE).c $(DEVICE_DIR)/gcc/startup_$(DEVICE)_$(CORE).S \
           $(DRIVERS_DIR)/common/fsl_common.c $(DRIVERS_DIR)/common/fsl_common_arm.c \
           $(DRIVERS_DIR)/lpuart/fsl_lpuart.c $(DRIVERS_DIR)/mu1/fsl_mu.c \
           $(COMPONENTS_DIR)/clock/hal_clock.c \
           $(COMPONENTS_DIR)/clock/porting/platform/imx95/hal_clock_platform.c \
           $(COMPONENTS_DIR)/pinctrl/hal_pinctrl.c \
           $(COMPONENTS_DIR)/sm/clock/sm_clock.c $(COMPONENTS_DIR)/sm/pinctrl/sm_pinctrl.c \
           $(COMPONENTS_DIR)/sm/porting/platform/imx95/$(CORE)/sm_platform.c \
           $(COMPONENTS_DIR)/smt/smt.c $(COMPONENTS_DIR)/imx_sm_crc/crc.c \
           $(addprefix $(COMPONENTS_DIR)/scmi/,scmi.c scmi_base.c scmi_bbm.c scmi_clock.c scmi_cpu.c \
             scmi_fusa.c scmi_lmm.c scmi_misc.c scmi_perf.c scmi_pinctrl.c scmi_power.c \
             scmi_reset.c scmi_sensor.c scmi_sys.c scmi_voltage.c) \
           $(EXAMPLE_DIR)/pin_mux.c $(BOARD_DIR)/rsc_table.c

# the i.MX 95 M7 has the double-precision FPU (chip.yml: DP_FPU, fpv5_dp)
ARCH := -mcpu=cortex-m7 -mthumb -mfpu=fpv5-d16 -mfloat-abi=hard
# ports/imx95 comes first: its rpmsg_config.h replaces the FreeRTOS/SRTM example's one.
INCLUDES := -Icore -Iports/imx95 -I$(EXAMPLE_DIR) -I$(BOARD_DIR) -I$(BOARD_DIR)/sm \
            -I$(DEVICE_DIR) -I$(DEVICE_DIR)/drivers -I$(PERIPH_DIR) -I$(CMSIS_DIR) \
            $(addprefix -I$(DRIVERS_DIR)/,common lpuart mu1) \
            $(addprefix -I$(COMPONENTS_DIR)/,clock clock/porting/platform/imx95 pinctrl \
              pinctrl/porting/platform/imx95 sm sm/clock sm/pinctrl sm/porting/platform/imx95/$(CORE) \
              scmi smt imx_sm_crc debug_console_lite) \
            -I$(RPMSG_DIR)/lib/include -I$(RPMSG_DIR)/lib/include/platform/imx95_m7 \
            -I$(RPMSG_DIR)/lib/include/environment/bm -I$(REMOTEPROC_DIR)
# as the SDK's board/example CMake sets them: clocks gated by the System Manager, not the
# drivers; the startup code zeroes .bss and fills the non-cached data; no debug console.
DEFINES := -DCPU_$(DEVICE)AVZXN_$(CORE) -DSDK_OS_BAREMETAL -D__USE_SHMEM -DNDEBUG \
           -DFSL_SDK_DISABLE_DRIVER_CLOCK_CONTROL=1 -DSDK_DEBUGCONSOLE=2 \
           -D__STARTUP_CLEAR_BSS -D__STARTUP_INITIALIZE_NONCACHEDATA
CFLAGS := -std=gnu11 -Os -g $(ARCH) -fno-math-errno -ffunction-sections \
          -fdata-sections -MMD -MP $(DEFINES) $(INCLUDES)
# the SDK's own sources are not held to the firmware core's -Werror (nor to -Wextra)
SDK_CFLAGS := -Wall
CORE_CFLAGS := -Wall -Wextra -Werror -Wshadow -Wdouble-promotion -Wstrict-prototypes -Wundef
LDFLAGS := $(ARCH) -T $(LDSCRIPT) -Wl,--defsym=__stack_size__=0x1000 -Wl,--defsym=__heap_size__=0 \
           -Wl,--gc-sections -Wl,-Map=$(OUT)/edgevla-fw.map --specs=nano.specs --specs=nosys.specs

obj = $(OUT)/obj/$(notdir $(basename $(1))).o
EVLA_OBJ := $(foreach s,$(EVLA_SRC),$(call obj,$(s)))
SDK_OBJ := $(foreach s,$(RPMSG_SRC) $(SDK_SRC),$(call obj,$(s)))
dups := $(strip $(foreach o,$(sort $(EVLA_OBJ) $(SDK_OBJ)),$(if $(filter-out 1,$(words $(filter $(o),$(EVLA_OBJ) $(SDK_OBJ)))),$(o))))
ifneq ($(dups),)
$(error two sources map to the same object: $(dups))
endif

all: $(OUT)/edgevla-fw.bin

define compile_rule
$(call obj,$(1)): $(1) ports/imx95/imx95.mk | $(OUT)/obj
	$$(ARM_CC) $$(CFLAGS) $(2) -c -o $$@ $$<
endef
$(foreach s,$(EVLA_SRC),$(eval $(call compile_rule,$(s),$$(CORE_CFLAGS))))
$(foreach s,$(RPMSG_SRC) $(SDK_SRC),$(eval $(call compile_rule,$(s),$$(SDK_CFLAGS))))

$(OUT)/obj:
	mkdir -p $@

$(OUT)/edgevla-fw.elf: $(EVLA_OBJ) $(SDK_OBJ) $(LDSCRIPT)
	$(ARM_CC) -o $@ $(EVLA_OBJ) $(SDK_OBJ) $(LDFLAGS) -lm
	$(ARM_SIZE) $@

$(OUT)/edgevla-fw.bin: $(OUT)/edgevla-fw.elf
	$(ARM_OBJCOPY) -O binary $< $@

-include $(wildcard $(OUT)/obj/*.d)

.PHONY: all
