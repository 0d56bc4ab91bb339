"""lstm-chat in the browser: `streamlit run app.py`.

Two pages over the chatbot/ library: Chat (stream replies from a model whose LSTM state is the
conversation's memory) and Train (train a new model on your own text in the background).
"""

import streamlit as st

st.set_page_config(page_title="lstm-chat", page_icon=":material/memory:")
page = st.navigation([
    st.Page("app_pages/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
])
page.run()
