"""lstm-chat: train a stacked LSTM language model on your text and chat with it.

The recurrent state is the conversation's memory: each turn feeds only the new message.
"""

from .chat import ChatSession
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .errors import ChatbotError
from .model import LanguageModel, ModelConfig
from .sampling import SamplingConfig

__all__ = ["ChatSession", "Checkpoint", "ChatbotError", "LanguageModel", "ModelConfig",
           "SamplingConfig", "load_checkpoint", "save_checkpoint"]
