"""Operations shared by the CLI, the admin API and the testing kit (replay, purge, cancel, ...).

Empty for now: the use cases move here in the next step of the layout (issue 15, phase 2).
"""
