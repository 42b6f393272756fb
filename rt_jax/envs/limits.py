"""The fixed sizes of the environment machine, shared by the JAX machine and the Python reference.

The JAX machine keeps every buffer at a fixed size; where a command would need more, both
implementations give the same error or the same truncation, so the reference stays an exact oracle.
Sizes are in UTF-8 bytes.
"""
HOME = '/home/user'
MAX_ENTRIES = 32  # files and directories, '/', '/home' and HOME included
MAX_PATH = 96  # an absolute path, after resolving '.' and '..'
MAX_FILE = 1024  # one file's content
MAX_COMMAND = 1024  # the text between <bash> and </bash> that the machine sees (the tail of it)
MAX_WORDS = 16  # words and operators of one command line
MAX_STREAM = 2048  # stdout or stderr of one command; longer output is cut and marked
MAX_ANSWER = 1024  # the head of the final answer kept for grading
MAX_CALLS = 10  # tool calls per episode; the next segment ends the episode
TRUNCATED = '[output truncated]\n'
