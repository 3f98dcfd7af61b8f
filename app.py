"""The playground: `streamlit run app.py`. The sidebar lists the landing page, the playground and one page per study
of the registry (`analyses.STUDIES`), and picks and loads a pair for every page."""
import streamlit as st

from analyses import STUDIES

PLAYGROUND = st.Page("app_pages/1_Playground.py", title="Playground", icon="🎛️")
pages = [st.Page("home.py", title="Home", icon="🔬", default=True), PLAYGROUND,
         *[st.Page(study.page, title=study.title, icon=study.icon) for study in STUDIES]]
st.navigation(pages).run()
