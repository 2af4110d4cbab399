#ifndef RPMSG_NS_H_STUB
#define RPMSG_NS_H_STUB
#include "rpmsg_lite.h"
#define RL_NS_CREATE (0)
int32_t rpmsg_ns_announce(struct rpmsg_lite_instance *rpmsg_lite_dev,
                          struct rpmsg_lite_endpoint *new_ept, const char *ept_name,
                          uint32_t flags);
#endif
