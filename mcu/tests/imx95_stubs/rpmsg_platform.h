#ifndef RPMSG_PLATFORM_H_STUB
#define RPMSG_PLATFORM_H_STUB
#define RL_GEN_LINK_ID(com_id, vring_id) (((com_id) << 2U) | (vring_id))
#define RL_PLATFORM_IMX95_M7_A55_USER_LINK_ID RL_GEN_LINK_ID(0U, 1U)
#endif
