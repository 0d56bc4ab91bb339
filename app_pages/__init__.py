"""The Streamlit pages of app.py. Each page is a thin layer over chatbot/."""
