"""Human-readable forms of numbers that progress lines share (the ETA of training, data creation, the benchmark
suite and the attention viewer's guesses)."""


def format_duration(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
