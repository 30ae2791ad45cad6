"""cl-env: continual-learning task streams as Gymnasium environments.

Importing ``cl_env`` registers every stream id with Gymnasium. Nothing heavy is imported here:
no agents, memories or TensorBoard.

Example:
    >>> import gymnasium as gym, cl_env
    >>> env = gym.make("MNISTRotations-v0", batch_size=10)
    >>> obs, info = env.reset(seed=0)
"""

from cl_env import metrics
from cl_env.env import ContinualEnv, make_env
from cl_env.error import CLEnvError, CorruptDataError, DataNotFoundError, UnknownNameError
from cl_env.registration import STREAMS, StreamSpec, make_stream, register_envs, stream_ids
from cl_env.stream import Batch, Task, TaskStream, concat

register_envs()

__version__ = "0.1.0"
__all__ = [
    "STREAMS",
    "Batch",
    "CLEnvError",
    "ContinualEnv",
    "CorruptDataError",
    "DataNotFoundError",
    "StreamSpec",
    "Task",
    "TaskStream",
    "UnknownNameError",
    "concat",
    "make_env",
    "make_stream",
    "metrics",
    "register_envs",
    "stream_ids",
]
