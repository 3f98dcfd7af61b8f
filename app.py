"""The playground: `streamlit run app.py`. The sidebar lists the landing page, the playground and one page per study
of the registry and the post-training lab (`analyses.RECORDS`), and picks and loads a pair for every page."""
import streamlit as st

from analyses import RECORDS
from app_pages.ui.icons import HOME, PLAYGROUND as PLAYGROUND_ICON, study_icon

PLAYGROUND = st.Page("app_pages/1_Playground.py", title="Playground", icon=PLAYGROUND_ICON)
pages = [st.Page("home.py", title="Home", icon=HOME, default=True), PLAYGROUND,
         *[st.Page(study.page, title=study.title, icon=study_icon(study)) for study in RECORDS]]
st.navigation(pages).run()
