#ifndef RPMSG_LITE_H_STUB
#define RPMSG_LITE_H_STUB
#include <stdint.h>
#include "rpmsg_config.h"
#if !(defined(RL_USE_STATIC_API) && RL_USE_STATIC_API == 1)
#error "the imx95 port uses the static API of rpmsg-lite (no heap)"
#endif
#define RL_SUCCESS (0)
#define RL_RELEASE (0)
#define RL_NO_FLAGS (0U)
#define RL_DONT_BLOCK (0U)
#define RL_BLOCK (0xFFFFFFFFU)
#define RL_ADDR_ANY (0xFFFFFFFFU)
typedef int32_t (*rl_ept_rx_cb_t)(void *payload, uint32_t payload_len, uint32_t src, void *priv);
struct rpmsg_lite_endpoint {
    uint32_t addr;
    rl_ept_rx_cb_t rx_cb;
    void *rx_cb_data;
    void *rfu;
};
struct rpmsg_lite_ept_static_context {
    struct rpmsg_lite_endpoint ept;
    void *node[3];
};
struct rpmsg_lite_instance {
    uint32_t link_state;
    char *sh_mem_base;
    uint32_t link_id;
};
struct rpmsg_lite_instance *rpmsg_lite_remote_init(void *shmem_addr, uint32_t link_id,
                                                   uint32_t init_flags,
                                                   struct rpmsg_lite_instance *static_context);
uint32_t rpmsg_lite_is_link_up(struct rpmsg_lite_instance *rpmsg_lite_dev);
struct rpmsg_lite_endpoint *rpmsg_lite_create_ept(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                                  uint32_t addr, rl_ept_rx_cb_t rx_cb,
                                                  void *rx_cb_data,
                                                  struct rpmsg_lite_ept_static_context *ept_context);
int32_t rpmsg_lite_send(struct rpmsg_lite_instance *rpmsg_lite_dev,
                        struct rpmsg_lite_endpoint *ept, uint32_t dst, char *data, uint32_t size,
                        uintptr_t timeout);
#endif
