"""LeRobot 0.4.4's async inference (RobotClient + PolicyServer), re-created as a stepped model.

This is the baseline the executor is measured against, so it must be LeRobot's real behaviour,
not a strawman. It restates, line for line, the queue logic of
``lerobot/async_inference/robot_client.py`` and the observation filter of ``policy_server.py``
(0.4.4) without threads, gRPC or pickle, and it *imports* from the installed lerobot the parts
that decide numbers: the aggregate function (``configs.get_aggregate_function``), the
``TimedAction`` / ``TimedObservation`` records and the observation-similarity check
(``helpers._compare_observation_states``).

Semantics reproduced (robot_client.py / policy_server.py):

* actions are keyed by **timestep** = observation timestep + index in the chunk; the
  observation's timestep is ``max(latest_action, 0)``, the last *executed* timestep;
* on arrival (``_aggregate_action_queues``): incoming timesteps ``<= latest_action`` are skipped,
  timesteps already queued are merged with ``aggregate_fn(queued, new)``, the rest appended, and
  the queue is *replaced* by the incoming actions (queued actions beyond the chunk are dropped);
* each control tick pops one action if the queue is not empty (``control_loop_action``), then
  sends an observation when ``qsize / action_chunk_size <= chunk_size_threshold``
  (``_ready_to_send_observation``), with ``must_go`` set when the queue is empty and a chunk
  has arrived since the last must-go observation;
* the server keeps only the newest observation (``Queue(maxsize=1)``) and skips one whose
  timestep was predicted already or whose joint state is within ``atol = 1`` (LeRobot's
  default, in its joint units: degrees for SO-100/101) of the last processed one, unless
  ``must_go``; inference starts as soon as the server is idle and lasts at least
  ``inference_latency`` (server config, default 1/30 s); action i's timestamp is
  ``obs.timestamp + i * environment_dt``.

Importing this module imports nothing heavy; `LeRobotAsync` imports torch and lerobot on
construction (the bench and the ``train`` tests use it, the board runtime never does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from queue import Queue
from typing import Any, Callable

import numpy as np

from edgevla.training.torch_setup import ensure_torchvision

# LeRobot's SO-100/101 drivers report joints in degrees; the similarity filter's atol=1 is
# in those units. Our joints are radians of the servo shaft.
RAD_TO_LEROBOT_UNITS = 180.0 / math.pi


def import_lerobot() -> dict[str, Any]:
    """The pieces of lerobot 0.4.4 the baseline uses, with a clear error if it is missing."""
    try:
        ensure_torchvision()
        import torch
        from lerobot.async_inference.configs import AGGREGATE_FUNCTIONS, get_aggregate_function
        from lerobot.async_inference.helpers import TimedAction, TimedObservation, _compare_observation_states
    except ImportError as exc:
        raise RuntimeError(
            "the LeRobot baseline needs the [train] extra (torch + lerobot 0.4.4): "
            f"{exc}. Install with `make install` or `pip install edgevla[train]`.") from exc
    return {"torch": torch, "AGGREGATE_FUNCTIONS": AGGREGATE_FUNCTIONS,
            "get_aggregate_function": get_aggregate_function, "TimedAction": TimedAction,
            "TimedObservation": TimedObservation, "compare_states": _compare_observation_states}


@dataclass
class ClientTick:
    """What the client did on one control tick."""

    action: np.ndarray | None  # the action sent to the robot (None: queue empty)
    timestep: int  # its timestep (latest_action after the tick)
    observation_sent: bool
    must_go: bool
    queue_size: int  # before popping (what lerobot logs in action_queue_size)


class LeRobotAsync:
    """RobotClient + PolicyServer of lerobot 0.4.4 on a caller-driven timeline.

    The caller supplies the policy (``policy(obs_state, t_capture_s) -> (H x D actions,
    latency_s)``) and calls `tick(now_s, measured_state)` at the client's fps.
    """

    def __init__(self, fps: float, actions_per_chunk: int, chunk_size_threshold: float = 0.5,
                 aggregate_fn_name: str = "weighted_average",
                 server_inference_latency_s: float = 1 / 30, similarity_atol: float = 1.0,
                 lerobot: dict[str, Any] | None = None) -> None:
        lr = lerobot or import_lerobot()
        self._torch = lr["torch"]
        self._TimedAction = lr["TimedAction"]
        self._TimedObservation = lr["TimedObservation"]
        self._compare_states = lr["compare_states"]
        self.aggregate_fn = lr["get_aggregate_function"](aggregate_fn_name)
        self.environment_dt = 1.0 / fps
        self.actions_per_chunk = actions_per_chunk
        self._chunk_size_threshold = chunk_size_threshold
        self.server_inference_latency_s = server_inference_latency_s
        self.similarity_atol = similarity_atol
        # client state (RobotClient.__init__)
        self.latest_action = -1
        self.action_chunk_size = -1
        self.action_queue: Queue = Queue()
        self.must_go = True
        # server state (PolicyServer)
        self._obs_queue: list[Any] = []  # Queue(maxsize=1): newest observation only
        self._predicted_timesteps: set[int] = set()
        self.last_processed_obs: Any = None
        self._free_at_s = -math.inf  # when the server finished its last inference
        self._in_flight: tuple[float, list[Any]] | None = None  # (deliver_at_s, timed actions)
        # counters
        self.observations_sent = 0
        self.observations_filtered = 0
        self.chunks_received = 0
        self.empty_queue_ticks = 0
        self.skipped_actions = 0

    # ------------------------------------------------------------------ client side
    def _aggregate_action_queues(self, incoming_actions: list[Any]) -> None:
        """robot_client.py RobotClient._aggregate_action_queues, single-threaded."""
        future_action_queue: Queue = Queue()
        current_action_queue = {a.get_timestep(): a.get_action()
                                for a in self.action_queue.queue}
        for new_action in incoming_actions:
            latest_action = self.latest_action
            if new_action.get_timestep() <= latest_action:
                self.skipped_actions += 1
                continue
            elif new_action.get_timestep() not in current_action_queue:
                future_action_queue.put(new_action)
                continue
            future_action_queue.put(self._TimedAction(
                timestamp=new_action.get_timestamp(), timestep=new_action.get_timestep(),
                action=self.aggregate_fn(current_action_queue[new_action.get_timestep()],
                                         new_action.get_action())))
        self.action_queue = future_action_queue

    def _receive(self, timed_actions: list[Any]) -> None:
        """robot_client.py receive_actions, for one chunk."""
        self.action_chunk_size = max(self.action_chunk_size, len(timed_actions))
        self._aggregate_action_queues(timed_actions)
        self.must_go = True
        self.chunks_received += 1

    def _ready_to_send_observation(self) -> bool:
        return self.action_queue.qsize() / self.action_chunk_size <= self._chunk_size_threshold

    def tick(self, now_s: float, measured_state: np.ndarray,
             policy: Callable[[np.ndarray, float, int], tuple[np.ndarray, float]]) -> ClientTick:
        """One iteration of RobotClient.control_loop at host time ``now_s``."""
        self._server_progress(now_s, policy)
        qsize = self.action_queue.qsize()
        action = None
        if not self.action_queue.empty():  # (1) perform an action when available
            timed_action = self.action_queue.get_nowait()
            action = np.asarray(timed_action.get_action(), dtype=np.float64)
            self.latest_action = timed_action.get_timestep()
        else:
            self.empty_queue_ticks += 1
        sent = must_go = False
        if self._ready_to_send_observation():  # (2) stream an observation
            obs = self._TimedObservation(timestamp=now_s,
                                         observation={"state": np.array(measured_state)},
                                         timestep=max(self.latest_action, 0))
            obs.must_go = self.must_go and self.action_queue.empty()
            must_go = obs.must_go
            self._send_observation(obs)
            if obs.must_go:
                self.must_go = False
            sent = True
        self._server_progress(now_s, policy)
        return ClientTick(action, self.latest_action, sent, must_go, qsize)

    # ------------------------------------------------------------------ server side
    def _send_observation(self, obs: Any) -> None:
        """policy_server.py SendObservations -> _enqueue_observation."""
        self.observations_sent += 1
        if (obs.must_go or self.last_processed_obs is None
                or self._obs_sanity_checks(obs, self.last_processed_obs)):
            self._obs_queue = [obs]  # full queue: drop the old one, keep the newest
        else:
            self.observations_filtered += 1

    def _obs_sanity_checks(self, obs: Any, previous_obs: Any) -> bool:
        if obs.get_timestep() in self._predicted_timesteps:
            return False
        torch = self._torch
        a = torch.as_tensor(obs.get_observation()["state"] * RAD_TO_LEROBOT_UNITS)
        b = torch.as_tensor(previous_obs.get_observation()["state"] * RAD_TO_LEROBOT_UNITS)
        return not self._compare_states(a, b, atol=self.similarity_atol)

    def _server_progress(self, now_s: float, policy) -> None:
        """GetActions: deliver a finished chunk, then start on the newest observation."""
        if self._in_flight is not None and self._in_flight[0] <= now_s:
            done, actions = self._in_flight
            self._in_flight = None
            self._free_at_s = done
            self._receive(actions)
        if self._in_flight is None and self._obs_queue:
            obs = self._obs_queue.pop()
            self._predicted_timesteps.add(obs.get_timestep())
            self.last_processed_obs = obs
            chunk, latency_s = policy(obs.get_observation()["state"], obs.get_timestamp(),
                                      obs.get_timestep())
            chunk = chunk[: self.actions_per_chunk]
            timed = [self._TimedAction(timestamp=obs.get_timestamp() + i * self.environment_dt,
                                       timestep=obs.get_timestep() + i, action=a)
                     for i, a in enumerate(np.asarray(chunk, dtype=np.float32))]
            # GetActions is called again as soon as the last one returned: inference starts
            # when both the observation and the server are there
            start = max(obs.get_timestamp(), self._free_at_s)
            self._in_flight = (start + max(latency_s, self.server_inference_latency_s), timed)

    def stats(self) -> dict[str, Any]:
        return {"observations_sent": self.observations_sent,
                "observations_filtered": self.observations_filtered,
                "chunks_received": self.chunks_received,
                "empty_queue_ticks": self.empty_queue_ticks,
                "skipped_actions": self.skipped_actions}
