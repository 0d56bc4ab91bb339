"""lstm-chat: train a stacked LSTM language model on your text and chat with it.

The recurrent state is the conversation's memory: each turn feeds only the new message.
"""

from .chat.sampling import SamplingConfig
from .chat.session import ChatSession
from .errors import ChatbotError
from .lm.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .lm.model import LanguageModel, ModelConfig

__all__ = ["ChatSession", "Checkpoint", "ChatbotError", "LanguageModel", "ModelConfig",
           "SamplingConfig", "load_checkpoint", "save_checkpoint"]
