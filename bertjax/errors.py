"""One error type for bad input, so command-line entry points can print one clear line and exit non-zero."""
import functools
import sys


class BertjaxError(ValueError):
    """Bad input: a wrong config, a missing or malformed file, or data that does not match the config.

    The message names the input and says how to fix it. Entry points catch this, print `error: <message>`
    to stderr and exit with status 2; programming errors keep their tracebacks.
    """


def exit_on_bad_input(main_fn):
    """Wrap a command-line `main` so a BertjaxError prints one line to stderr and exits with status 2."""
    @functools.wraps(main_fn)
    def wrapper(*args, **kwargs):
        try:
            return main_fn(*args, **kwargs)
        except BertjaxError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
