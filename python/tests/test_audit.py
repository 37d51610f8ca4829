"""dream.audit against `dream audit`: the same report, key for key, on a labelled folder built
from the shared photos (the CLI's report has what only the CLI makes on top: options.panels
and each image's thumbnail)."""
import json
import os
import shutil

import pytest

import dream

SHARED = os.environ.get("DREAM_SHARED",
                        os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))


@pytest.fixture
def folder(tmp_path):
    src = os.path.join(SHARED, "images")
    if not os.path.isdir(src):
        pytest.skip("no shared photos at %s" % src)
    ds = tmp_path / "ds"
    for sub, name in [("bald eagle", "eagle"), ("sorrel", "horses"), ("n02110185", "dog"),
                      ("", "giraffe"), ("", "scream")]:
        (ds / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(src, name + ".jpg"), ds / sub / (name + ".jpg"))
    (ds / "broken.jpg").write_bytes(b"not a JPEG")
    return ds


def _cli_only(report):
    """The report without what only the CLI adds (its thumbnails and the panels option)."""
    report["options"].pop("panels")
    for im in report["images"]:
        im.pop("thumb")
    return report


def test_same_report_as_the_cli(cli, googlenet, folder, tmp_path):
    out = tmp_path / "out"
    r = cli("audit", "-q", "--no-panels", "-l", "conv2/3x3", "--perturb", "occlusion", "-k", "3",
            folder, out, ok=False)  # the preset the fixture opened
    assert r.returncode == 1, r.stderr  # broken.jpg
    want = _cli_only(json.loads((out / "report.json").read_text()))
    got = dream.audit(str(folder), googlenet, layers=["conv2/3x3"], perturb="occlusion", top=3)
    assert got == want
    assert got["errors"][0]["path"] == "broken.jpg"
    assert got["accuracy"]["labelled"] == 3
    assert [t["class"] for t in got["images"][0]["top5"]][:2] == [21, 22]  # eagle: kite first


def test_shards_and_errors(googlenet, folder, tmp_path):
    whole = dream.audit(str(folder), googlenet)
    parts = [dream.audit(str(folder), googlenet, shard=(i, 2)) for i in (1, 2)]
    assert sorted(im["path"] for p in parts for im in p["images"]) == \
        [im["path"] for im in whole["images"]]
    assert all(p["shard"]["count"] == 2 for p in parts)
    with pytest.raises(dream.Error) as e:
        dream.audit(str(tmp_path / "nothing"), googlenet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(dream.Error, match="no images"):
        dream.audit(str(tmp_path / "empty"), googlenet)
    (folder / "bald eagel").mkdir()
    shutil.copy(folder / "scream.jpg", folder / "bald eagel" / "s.jpg")
    with pytest.raises(dream.Error, match="did you mean 'bald eagle'"):
        dream.audit(str(folder), googlenet)
    with pytest.raises(dream.Error, match="not a perturbation"):
        dream.audit(str(folder), googlenet, perturb="blurr")
