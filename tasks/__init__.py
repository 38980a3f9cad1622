"""Tasks that build, run and look after a JupyterHub on one Docker host.

One module per concern; `tasks.root` composes them into the collection `inv` shows.
"""
