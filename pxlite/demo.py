"""``pxlite demo``: the SPEC walkthrough on generated images, local destinations, no network.

Creates a database in a folder (a new temp folder unless given), inserts generated photos by
path, as PIL images and as bytes, adds computed columns with the default destination, a
per-column destination and a global ``output_media_dest``, queries them, updates and deletes a
row and undoes the delete, checks catalog against files, and prints what it did at each step.
"""

from __future__ import annotations

import importlib.util
import io
import tempfile
import time
from pathlib import Path

import PIL.Image

import pxlite as pxl
import pxlite.functions as pxlf

from .display import short_url
from .functions.video import frame_iterator
from .imagegen import make_image, write_images

#: The demo embedding's result type.
Colour = pxl.Array[(3,), pxl.Float]


@pxl.udf
def mean_colour(img: PIL.Image.Image) -> Colour:  # type: ignore[valid-type]
    """The demo's toy image embedding: an image's mean red, green and blue (a real one:
    pxlite.functions.clip)."""
    import numpy as np  # here: numpy is optional (pxlite[vectors])

    return np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32).mean(axis=(0, 1))


def _say(title: str) -> None:
    print(f"\n== {title}")


def _frames(db: pxl.Connection, folder: Path) -> None:
    """A frame view over a generated video (with the ``pxlite[video]`` extra)."""
    import importlib.util

    if importlib.util.find_spec("av") is None:
        print("(a frame view needs PyAV: pip install 'pxlite[video]')")
        return
    import av

    path = folder / "clip.mp4"
    with av.open(str(path), "w") as out:  # 3 seconds at 10 frames a second
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for k in range(30):
            frame = av.VideoFrame.from_image(make_image(k, (320, 240)))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    _say("a frame view: the video decoded once, each picked frame stored once")
    db.drop_table("demo.videos", force=True, if_not_exists="ignore")
    videos = db.create_table("demo.videos", {"video": pxl.Video})
    videos.insert([{"video": str(path)}])
    frames = db.create_view("demo.frames", videos, iterator=frame_iterator(videos.video, fps=1))
    print(frames.select(frames.pos, frames.pos_msec, frames.frame.fileurl).collect())


def run_demo(folder: Path | None = None, n: int = 6) -> Path:
    """Run the walkthrough in ``folder``; return the database path."""
    t_start = time.perf_counter()
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="pxlite-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    n = max(3, n)
    _say(f"generating {n} photos in {folder / 'photos'}")
    photos = write_images(folder / "photos", n, size=(640, 480))

    db_path = folder / "demo.pxl"
    db = pxl.connect(db_path)
    print(f"database: {db.path}\nmedia folder: {db.media_dir}")
    db.create_dir("demo", if_exists="ignore")
    db.drop_table("demo.media", force=True, if_not_exists="ignore")  # and its views
    t = db.create_table("demo.media", {"image": pxl.Image, "label": pxl.String},
                        version_retention_days=30)  # (the default)

    _say("insert: local paths (stored as references), a PIL image and PNG bytes (stored as files)")
    print(t.insert([{"image": p, "label": f"photo {i}"} for i, p in enumerate(photos[:-1])]))
    buf = io.BytesIO()
    make_image(999, (320, 240)).save(buf, format="PNG")
    print(t.insert([{"image": make_image(998, (320, 240)), "label": "generated"},
                    {"image": buf.getvalue(), "label": "png bytes"}]))

    _say("computed columns: default destination, a per-column destination, a global one")
    print(t.add_computed_column(flipped=t.image.transpose(pxl.FLIP_LEFT_RIGHT)))
    rotated_dir = folder / "rotated"
    print(t.add_computed_column(rotated=t.image.rotate(90), destination=str(rotated_dir)))
    pxl.configure(output_media_dest=str(folder / "thumbs"))
    try:
        print(t.add_computed_column(thumb=t.image.thumbnail((128, 128))))
    finally:
        pxl.configure(output_media_dest=None)
    print(t.add_computed_column(width=t.image.width))
    print(t.add_computed_column(height=t.image.height))

    _say("a new row computes every computed column")
    print(t.insert(image=photos[-1], label="late arrival"))

    _say("schema: where each column's files go, and where the thumbnails written under the "
         "global destination stay")
    print(repr(t))

    _say("where the files are (first 3 rows; content hashes abbreviated)")
    rs = t.select(t.label, t.image.fileurl, t.flipped.fileurl, t.rotated.fileurl,
                  t.thumb.fileurl).limit(3).collect()
    for r in rs:
        print(f"- {r['label']}")
        for k in ("image_fileurl", "flipped_fileurl", "rotated_fileurl", "thumb_fileurl"):
            print(f"    {k[:-8]:<8} {short_url(r[k], 80)}")

    _say("a query: wide images, ordered by label, first 3")
    print(t.select(t.label, t.width, t.height, thumb_path=t.thumb.localpath)
          .where(t.width > 400).order_by(t.label).limit(3).collect())

    _say("a view: the wide photos, with a column of its own, kept in step with the table")
    wide = db.create_view("demo.wide", t.where(t.width > 400))
    print(wide.add_computed_column(tiny=wide.image.thumbnail((32, 32))))
    print(f"{wide.count()} wide photos of {t.count()}; views of demo.media: {t.list_views()}")
    _frames(db, folder)

    _say("similarity search: an embedding index (a toy embedding: the mean colour), the 3 "
         "photos closest to another picture")
    if importlib.util.find_spec("numpy") is None:
        print("(skipped: it needs numpy: pip install 'pxlite[vectors]')")
    else:
        t.add_embedding_index(t.image, image_embed=mean_colour)
        like = t.image.similarity(image=make_image(7, (64, 64)))
        print(t.order_by(like, asc=False).limit(3).select(t.label, like).collect())

    _say("group_by, functions and JSON paths run inside SQLite")
    print(t.group_by(t.width).select(t.width, n=pxlf.count(t.image)).order_by(t.width).collect())
    t.add_column(meta=pxl.Json)
    t.update({"meta": {"camera": {"model": "X100"}, "tags": ["demo"]}},
             where=t.label.startswith("photo"))
    print(t.where(t.meta.camera.model == "X100").select(t.label.upper(), t.meta.tags[0])
          .limit(2).collect())

    _say("a folder becomes a table in one call (running it again adds only new files)")
    print(pxl.io.import_files("demo.folder", str(folder / "photos"), glob="*.jpg", db=db))
    print(pxl.io.import_files(db.get_table("demo.folder"), str(folder / "photos"),
                              glob="*.jpg"))

    _say("update one input: its computed files are rewritten (the old ones kept for undo)")
    print(t.update({"image": make_image(12345, (640, 480))}, where=t.label == "generated"))
    _say("delete a row: your originals are never touched")
    print(t.delete(where=t.label == "png bytes"))
    print(f"originals still there: {all(p.exists() for p in photos)}")
    print(f"the view followed: {wide.count()} wide photos of {t.count()}")
    _say("undo it: every change is a version (t.history()); revert() goes back one")
    print(t.revert())
    print(f"{len(t.get_versions())} versions kept, the latest: {t.get_versions(1)[0]['kind']}")
    print(f"the view followed the revert: {wide.count()} wide photos of {t.count()}")

    _say("check: catalog vs files, both ways")
    print(db.check())
    print(f"\nrows: {t.count()}  |  done in {time.perf_counter() - t_start:.2f} s")
    print(f"try: pxlite show demo.media --db {db_path}")
    db.close()
    return db_path
