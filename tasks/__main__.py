"""`python -m tasks [-H host] TASK...`: see tasks/program.py."""
from tasks.program import program

program.run()
