"""lstm-chat in the browser: `streamlit run app.py`.

Three pages over the chatbot/ library: Chat (stream replies from a model whose LSTM state is
the conversation's memory), Inspect (its gates and cell state, token by token) and Train (train
a new model on your own text in the background).
"""

import streamlit as st

from app_pages.resources import keep_conversation_in_url, models_dir
from app_pages.train_job import DEFAULT_BUDGET_MINUTES, DEFAULT_TOKENIZER
from chatbot.chat.sampling import SETTINGS as SAMPLING_SETTINGS, SamplingConfig

st.set_page_config(page_title="lstm-chat", page_icon=":material/memory:")

# Settings that must survive a visit to another page. Streamlit forgets a widget's value when
# its page is not shown; values kept in session state (set here, before any widget) persist.
SAMPLING = SamplingConfig()
SETTINGS = {**{key: getattr(SAMPLING, key) for key in SAMPLING_SETTINGS},
            "use_seed": False, "seed": 0, "show_memory": False,
            "tokenizer": DEFAULT_TOKENIZER, "vocab_size": 0, "preset": "auto", "budget": DEFAULT_BUDGET_MINUTES, "source": "Upload a file"}
for key, default in SETTINGS.items():
    st.session_state[key] = st.session_state.get(key, default)
if (models_dir() / str(st.session_state.get("model_name"))).is_dir():
    st.session_state.model_name = st.session_state.model_name
keep_conversation_in_url()  # on every page, so a reload anywhere finds the chat
page = st.navigation([
    st.Page("app_pages/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("app_pages/inspect.py", title="Inspect", icon=":material/insights:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
])
page.run()
