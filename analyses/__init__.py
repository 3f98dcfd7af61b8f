"""The paper's studies as plain functions over a model pair, returning tidy tables. No Streamlit."""
