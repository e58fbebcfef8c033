"""UDFs used by the tests; importable in a subprocess as ``udfs.sample`` (tests/ is on the path)."""

from __future__ import annotations

import PIL.Image

import pxlite as pxl


@pxl.udf
def area(img: PIL.Image.Image) -> int:
    return img.width * img.height


@pxl.udf(is_method=True)
def grayscale(img: PIL.Image.Image) -> PIL.Image.Image:
    return img.convert("L")


@pxl.udf
def shout(s: str, times: int = 1) -> str:
    return s.upper() + "!" * times


@pxl.udf
def slow_flip(img: PIL.Image.Image) -> PIL.Image.Image:
    """A flip that takes ``PXLITE_TEST_UDF_SLEEP`` seconds (a long operation, for the tests)."""
    import os
    import time

    time.sleep(float(os.environ.get("PXLITE_TEST_UDF_SLEEP", "0")))
    return img.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)


@pxl.udf
def slow_rotate(img: PIL.Image.Image, seconds: float) -> PIL.Image.Image:
    """rotate(90) that first sleeps ``seconds`` (a long run to interrupt)."""
    import time

    time.sleep(seconds)
    return img.rotate(90, expand=True)


@pxl.udf
def process_id(img: PIL.Image.Image) -> int:
    """The id of the process computing the cell (which executor ran it)."""
    import os

    return os.getpid()


@pxl.udf
def fail_wider_than(img: PIL.Image.Image, limit: int) -> PIL.Image.Image:
    """The image flipped, or a ValueError when it is wider than ``limit`` pixels."""
    if img.width > limit:
        raise ValueError(f"{img.width} pixels wide is more than {limit}")
    return img.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)


@pxl.udf
def exit_process(img: PIL.Image.Image) -> int:
    """Ends the process computing it at once (a worker that dies)."""
    import os

    os._exit(3)


@pxl.udf
def interrupt_at(n: int, at: int) -> int:
    """``n``, until the row where ``n == at``: there a KeyboardInterrupt, as Ctrl-C would raise
    (the column being added stays pending)."""
    if n == at:
        raise KeyboardInterrupt
    return n


#: The names of the threads ``thread_noted`` and ``slow_thread_noted`` ran in, in call order.
THREADS_SEEN: list[str] = []


@pxl.udf
def thread_noted(n: int) -> int:
    """A cheap column that notes the thread computing it."""
    import threading

    THREADS_SEEN.append(threading.current_thread().name)
    return n + 1


@pxl.udf
def slow_thread_noted(n: int) -> int:
    """A column taking 3 ms a row (sleeping: it releases the GIL, as Pillow does)."""
    import threading
    import time

    time.sleep(0.003)
    THREADS_SEEN.append(threading.current_thread().name)
    return n + 1
