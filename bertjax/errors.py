"""One error type for bad input, so command-line entry points can print one clear line and exit non-zero."""
import argparse
import functools
import re
import sys

from absl import flags


class BertjaxError(ValueError):
    """Bad input: a wrong config, a missing or malformed file, or data that does not match the config.

    The message names the input and says how to fix it. Entry points catch this, print `error: <message>`
    to stderr and exit with status 2 (with --verbose: raised with its traceback); programming errors keep their
    tracebacks.
    """


VERBOSE_HELP = "on bad input, raise the error with its traceback instead of printing one error line"


def verbose_requested(argv: list[str] | None = None) -> bool:
    """--verbose on the command line: in `argv` (an argparse entry point's own arguments; default sys.argv), or
    absl's parsed --verbose flag (parse_flags defines it)."""
    if "verbose" in flags.FLAGS and flags.FLAGS.is_parsed() and flags.FLAGS.verbose:
        return True
    argv = sys.argv[1:] if argv is None else argv
    return any(arg == "--verbose" or arg.lower() in ("--verbose=true", "--verbose=1") for arg in argv)


def exit_on_bad_input(main_fn):
    """Wrap a command-line `main` so a BertjaxError prints one line to stderr and exits with status 2; with
    --verbose on the command line it is raised with its traceback instead."""
    @functools.wraps(main_fn)
    def wrapper(*args, **kwargs):
        try:
            return main_fn(*args, **kwargs)
        except BertjaxError as e:
            argv = args[0] if args and isinstance(args[0], (list, tuple)) else kwargs.get("argv")
            if verbose_requested(None if argv is None else list(argv)):
                raise
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def flag_bool(value: str) -> bool:
    """An argparse type for true/false flags (1/0, yes/no, t/f, y/n too)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "t", "yes", "y"):
        return True
    if lowered in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2) instead of usage plus error."""

    def error(self, message):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def define_verbose_flag() -> None:
    """absl's --verbose (once), listed with the main module's flags in --help."""
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, VERBOSE_HELP, module_name=sys.argv[0] if sys.argv else None)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing with one clear error line (exit 2) for a config file that does not load, or an unknown or
    ill-typed --config field. With --verbose these errors are raised with their tracebacks."""
    define_verbose_flag()
    try:
        remaining = flags.FLAGS(argv)
        if "config" in flags.FLAGS:
            getattr(flags.FLAGS["config"].value, "lock")  # a file that failed to load raises only when touched
        return remaining
    except OSError as e:  # ml_collections: the file is missing or unreadable
        _raise_if_verbose(argv)
        errno = re.search(r"\[Errno \d+\][^\n]*", str(e))
        reason = errno.group(0) if errno else str(e).strip().splitlines()[-1].strip()
        message = (f"--config={argv_config(argv)} cannot be loaded ({reason}); pass a config file such as "
                   "configs/base.py")
    except (SyntaxError, ImportError, NameError, TypeError) as e:  # the file is not a Python config module
        _raise_if_verbose(argv)
        where = f" line {e.lineno}" if isinstance(e, SyntaxError) and e.lineno else ""
        message = (f"--config={argv_config(argv)} is not a bertjax config file ({type(e).__name__}{where}: "
                   f"{getattr(e, 'msg', None) or e}); pass a Python file with get_config(), such as configs/base.py")
    except flags.Error as e:
        _raise_if_verbose(argv)
        message = str(e)
        if "Error whilst parsing config file" in message:  # get_config() raised (ml_collections adds a traceback)
            message = (f"--config={argv_config(argv)} failed in get_config() ({message.strip().splitlines()[-1]}); "
                       "fix the file or the text after ':'")
        if "--config." in message:
            message += "; give the field a value of its type (the config file lists every field)"
    except (AttributeError, KeyError) as e:  # ml_collections: no such field in the config
        _raise_if_verbose(argv)
        suggestion = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', str(e))
        detail = (f'"{suggestion.group(2)}" (did you mean "{suggestion.group(1)}"?)' if suggestion
                  else str(e).strip("'\""))
        message = (f"unknown config field {detail} in a --config.* flag; fix the spelling (the fields are in "
                   f"{argv_config(argv)})")
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _raise_if_verbose(argv: list[str]) -> None:
    """Re-raise the exception being handled when --verbose is on the command line."""
    if verbose_requested(list(argv[1:])):
        raise  # noqa: PLE0704  (called from an except block: re-raises its exception)


def argv_config(argv: list[str]) -> str:
    """The --config=FILE argument (else the flag's default), for error messages."""
    default = flags.FLAGS["config"].default_as_str.strip("'\"") if "config" in flags.FLAGS else "the config file"
    return next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), default)
