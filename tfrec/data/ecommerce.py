"""The embedded default e-commerce catalogue: a seeded generator with planted, learnable structure.

Products live in a knowledge graph of brands, a two-level category hierarchy, materials and uses;
their titles and descriptions are written from those facts, so text carries the same signal as
the graph. Each shopper has latent tastes (top categories, leaf categories, brands, uses,
materials, a price tier); interactions are drawn from those tastes with a popularity skew, in
time order, and some products are never interacted with (cold start). Same seed and numpy ->
the same bytes: `generate()` records the SHA-256 of each file in MANIFEST.
"""

import hashlib
from pathlib import Path

import numpy as np

from tfrec.atomic import atomic_dir
from tfrec.paths import cache_dir

VERSION = "ecommerce-v1"
SEED = 20261122
NUM_USERS = 3000
NUM_ITEMS = 2000
COLD_FRACTION = 0.08  # items that no training, valid or test interaction touches

# top category -> leaf category -> (product nouns, materials, uses, base price EUR)
CATALOGUE = {
    "Electronics": {
        "Headphones": (["Headphones", "Earbuds"], ["plastic", "aluminium", "silicone"],
                       ["travel", "gaming", "office"], 80),
        "Chargers": (["Charger", "Power Bank"], ["plastic", "aluminium"],
                     ["travel", "everyday"], 30),
        "Speakers": (["Bluetooth Speaker", "Soundbar"], ["plastic", "fabric", "aluminium"],
                     ["home", "outdoor"], 90),
        "Keyboards": (["Mechanical Keyboard", "Wireless Keyboard"], ["plastic", "aluminium"],
                      ["gaming", "office"], 70),
        "Cameras": (["Action Camera", "Webcam"], ["plastic", "aluminium"],
                    ["outdoor", "office"], 150),
    },
    "Kitchen": {
        "Cookware": (["Frying Pan", "Saucepan", "Wok"], ["stainless steel", "cast iron", "ceramic"],
                     ["home", "professional"], 45),
        "Knives": (["Chef's Knife", "Knife Set"], ["stainless steel", "ceramic"],
                   ["home", "professional"], 60),
        "Coffee": (["Coffee Grinder", "Espresso Maker", "French Press"],
                   ["stainless steel", "glass", "ceramic"], ["home", "office"], 70),
        "Food Storage": (["Food Container", "Lunch Box"], ["glass", "bamboo", "silicone"],
                         ["office", "kids", "everyday"], 20),
    },
    "Outdoor": {
        "Tents": (["Tent", "Shelter"], ["nylon", "recycled polyester"], ["camping"], 180),
        "Backpacks": (["Backpack", "Daypack"], ["nylon", "recycled polyester", "leather"],
                      ["camping", "travel", "everyday"], 70),
        "Hiking": (["Trekking Poles", "Hiking Boots"], ["aluminium", "carbon fibre", "leather"],
                   ["camping", "outdoor"], 90),
        "Cycling": (["Bike Light", "Cycling Helmet"], ["plastic", "carbon fibre"],
                    ["outdoor", "everyday"], 50),
    },
    "Fashion": {
        "Jackets": (["Jacket", "Parka"], ["wool", "recycled polyester", "leather"],
                    ["everyday", "outdoor"], 120),
        "Shoes": (["Sneakers", "Loafers"], ["leather", "fabric", "recycled polyester"],
                  ["everyday", "professional"], 85),
        "Bags": (["Tote Bag", "Wallet"], ["leather", "cotton"], ["everyday", "travel"], 55),
        "Knitwear": (["Sweater", "Cardigan"], ["wool", "merino", "cotton"], ["everyday"], 65),
    },
    "Beauty": {
        "Skincare": (["Moisturiser", "Face Serum"], ["glass", "plastic"], ["everyday"], 25),
        "Haircare": (["Shampoo", "Hair Dryer"], ["plastic"], ["everyday", "travel"], 30),
        "Fragrance": (["Eau de Parfum"], ["glass"], ["gift"], 70),
    },
    "Home": {
        "Lighting": (["Desk Lamp", "Floor Lamp"], ["oak", "aluminium", "ceramic"],
                     ["office", "home"], 60),
        "Bedding": (["Duvet", "Pillow"], ["cotton", "wool", "bamboo"], ["home"], 60),
        "Decor": (["Vase", "Picture Frame"], ["ceramic", "glass", "oak"], ["home", "gift"], 30),
        "Furniture": (["Bookshelf", "Office Chair"], ["oak", "aluminium", "bamboo"],
                      ["office", "home"], 160),
    },
    "Sports": {
        "Fitness": (["Yoga Mat", "Dumbbells", "Kettlebell"], ["cast iron", "silicone", "cotton"],
                    ["gym", "home"], 40),
        "Running": (["Running Shoes", "Running Vest"], ["recycled polyester", "fabric"],
                    ["gym", "outdoor"], 90),
        "Swimming": (["Swim Goggles", "Swimsuit"], ["silicone", "recycled polyester"],
                     ["gym"], 30),
    },
}
BRAND_NAMES = [
    "Northpeak", "Aurelia", "Voltaro", "Kestrel", "Lumen & Co", "Brightwell", "Oakhaven",
    "Tidewater", "Ferrous", "Maple Row", "Quillon", "Solvik", "Ardent", "Halcyon", "Ironbark",
    "Velora", "Cobaltline", "Nordhem", "Pinecrest", "Saltmarsh", "Zephyra", "Granitex",
    "Bellwether", "Corvid", "Everfield", "Marlowe", "Orbis", "Rivet", "Sable", "Trailsmith",
    "Uplands", "Vantor", "Wrenfield", "Yarrow", "Alder & Ash", "Boreal", "Cinder", "Driftwood",
    "Emberly", "Fjordic", "Glint", "Hollow Oak", "Isola", "Juniper", "Kinetik", "Larkspur",
    "Mistral", "Nimbus", "Obsidian", "Pallas",
]
TIERS = ["budget", "mid-range", "premium"]
TIER_PRICE = [0.6, 1.0, 1.9]
ADJECTIVES = {
    "budget": ["Essential", "Basic", "Everyday", "Compact"],
    "mid-range": ["Classic", "Smart", "Versatile", "Lightweight"],
    "premium": ["Signature", "Pro", "Luxury", "Handcrafted"],
}
AGE_BANDS = ["18-24", "25-34", "35-49", "50-64", "65+"]
REGIONS = ["north", "south", "east", "west", "central"]
EVENTS = {3: "purchase", 2: "cart", 1: "view"}  # weight -> event


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _tsv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
    append_rows(path, rows)


def append_rows(path: Path, rows) -> None:
    """Appends `rows` (tuples) to the TSV table at `path` (streamed writers: bench/scale.py)."""
    with open(path, "a", encoding="utf-8", newline="\n") as f:
        f.writelines("\t".join(str(v) for v in row) + "\n" for row in rows)


def _catalogue(rng):
    """Entities and items: returns (entities, item_entity, entity_entity, items, facts)."""
    tops = list(CATALOGUE)
    leaves = [(top, leaf) for top in tops for leaf in CATALOGUE[top]]
    materials = sorted({m for t in tops for v in CATALOGUE[t].values() for m in v[1]})
    uses = sorted({u for t in tops for v in CATALOGUE[t].values() for u in v[2]})
    brand_tops = [rng.choice(len(tops), size=rng.integers(1, 3), replace=False)
                  for _ in BRAND_NAMES]
    brand_tier = rng.integers(0, 3, size=len(BRAND_NAMES))

    entities = ([(f"category:{_slug(t)}", t, "category") for t in tops]
                + [(f"category:{_slug(leaf)}", leaf, "subcategory") for _, leaf in leaves]
                + [(f"brand:{_slug(b)}", b, "brand") for b in BRAND_NAMES]
                + [(f"material:{_slug(m)}", m, "material") for m in materials]
                + [(f"use:{_slug(u)}", u, "use") for u in uses])
    entity_entity = [(f"category:{_slug(leaf)}", f"category:{_slug(top)}") for top, leaf in leaves]

    top_weight = rng.dirichlet(np.full(len(tops), 4.0))
    items, item_entity = [], []
    facts = {k: np.zeros(NUM_ITEMS, dtype=np.int64)
             for k in ("top", "leaf", "brand", "material", "use", "tier")}
    for i in range(NUM_ITEMS):
        t = rng.choice(len(tops), p=top_weight)
        top_leaves = [j for j, (tt, _) in enumerate(leaves) if tt == tops[t]]
        leaf_idx = top_leaves[rng.integers(len(top_leaves))]
        nouns, mats, leaf_uses, base = CATALOGUE[tops[t]][leaves[leaf_idx][1]]
        brands = [b for b, bt in enumerate(brand_tops) if t in bt] or list(range(len(BRAND_NAMES)))
        b = brands[rng.integers(len(brands))]
        tier = int(brand_tier[b])
        noun = nouns[rng.integers(len(nouns))]
        mat = mats[rng.integers(len(mats))]
        use = leaf_uses[rng.integers(len(leaf_uses))]
        adj = ADJECTIVES[TIERS[tier]][rng.integers(4)]
        price = base * TIER_PRICE[tier] * float(np.exp(rng.normal(0.0, 0.25)))
        item_id = f"P{i:05d}"
        brand = BRAND_NAMES[b]
        title = f"{brand} {adj} {mat.title()} {noun}"
        description = (f"A {TIERS[tier]} {noun.lower()} in {mat}, made for {use}. "
                       f"From the {brand} {leaves[leaf_idx][1].lower()} range in "
                       f"{tops[t].lower()}.")
        items.append((item_id, title, description, f"{price:.2f}"))
        item_entity += [(item_id, f"brand:{_slug(brand)}", "brand"),
                        (item_id, f"category:{_slug(leaves[leaf_idx][1])}", "category"),
                        (item_id, f"material:{_slug(mat)}", "material"),
                        (item_id, f"use:{_slug(use)}", "use")]
        for key, value in (("top", t), ("leaf", leaf_idx), ("brand", b),
                           ("material", materials.index(mat)), ("use", uses.index(use)),
                           ("tier", tier)):
            facts[key][i] = value
    sizes = {"top": len(tops), "leaf": len(leaves), "brand": len(BRAND_NAMES),
             "material": len(materials), "use": len(uses)}
    return entities, item_entity, entity_entity, items, facts, sizes


def _interactions(rng, facts, sizes):
    """Users and their (user, item, event, weight, timestamp) rows, drawn from latent tastes."""
    n_top = sizes["top"]
    top_taste = rng.dirichlet(np.full(n_top, 0.3), size=NUM_USERS)  # [U, tops]
    leaf_taste = rng.dirichlet(np.full(sizes["leaf"], 0.7), size=NUM_USERS)  # [U, leaves]
    brand_like = rng.random((NUM_USERS, sizes["brand"])) < 0.08
    use_like = rng.random((NUM_USERS, sizes["use"])) < 0.2
    material_like = rng.random((NUM_USERS, sizes["material"])) < 0.15
    tier_pref = rng.integers(0, 3, size=NUM_USERS)
    # Age band and region are weakly tied to taste, so user features carry a little signal.
    age = np.clip((top_taste.argmax(1) + rng.integers(0, 3, NUM_USERS)) % 5, 0, 4)
    region = (tier_pref + rng.integers(0, 2, NUM_USERS)) % 5
    users = [(f"U{u:05d}", AGE_BANDS[age[u]], REGIONS[region[u]]) for u in range(NUM_USERS)]

    popularity = rng.lognormal(0.0, 1.0, size=NUM_ITEMS)
    # the logs are taken on the [U, facts] tables before the gather to [U, I]: same floats
    affinity = (np.log(top_taste + 1e-4)[:, facts["top"]]
                + 0.7 * np.log(leaf_taste + 1e-4)[:, facts["leaf"]]
                + 1.5 * brand_like[:, facts["brand"]]
                + 1.0 * use_like[:, facts["use"]]
                + 0.7 * material_like[:, facts["material"]]
                - 0.8 * np.abs(tier_pref[:, None] - facts["tier"][None, :])
                + 0.6 * np.log(popularity)[None, :])  # [U, I]
    cold = rng.random(NUM_ITEMS) < COLD_FRACTION
    affinity[:, cold] = -np.inf
    median = np.median(affinity[:, ~cold], axis=1)  # [U]

    counts = np.clip(rng.lognormal(np.log(18), 0.6, size=NUM_USERS), 5, 120).astype(int)
    noisy = affinity + rng.gumbel(size=affinity.shape)
    # Gumbel top-k = sampling without replacement: the counts.max() best of each row, in order
    top = np.argpartition(-noisy, counts.max() - 1, axis=1)[:, :counts.max()]
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(noisy, top, 1), axis=1), 1)
    start = 1767225600  # 2026-01-01 UTC
    rows = []
    for u in range(NUM_USERS):
        picked = order[u, :counts[u]]
        first = start + int(rng.integers(0, 120 * 86400))
        times = np.sort(first + rng.integers(0, 60 * 86400, size=counts[u]))
        strength = affinity[u, picked] - median[u]
        r = rng.random(counts[u])
        p_buy = 0.02 + 0.13 / (1.0 + np.exp(-strength))
        event = np.where(r < p_buy, 3, np.where(r < 3 * p_buy, 2, 1))  # purchase, cart, view
        user = f"U{u:05d}"
        rows += [(user, f"P{item:05d}", EVENTS[w], w, t)
                 for item, t, w in zip(picked.tolist(), times.tolist(), event.tolist())]
    rows.sort(key=lambda row: (row[4], row[0], row[1]))
    return users, rows


def generate(out: Path, seed: int = SEED) -> None:
    """Writes the catalogue's six TSV tables and a MANIFEST of their SHA-256 digests to `out`."""
    rng = np.random.default_rng(seed)
    entities, item_entity, entity_entity, items, facts, sizes = _catalogue(rng)
    users, interactions = _interactions(rng, facts, sizes)
    write_tables(out, entities, item_entity, entity_entity, items, users, interactions)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tsv"))}
    (out / "MANIFEST").write_text("".join(f"{d}  {n}\n" for n, d in digests.items()))


def write_tables(out: Path, entities, item_entity, entity_entity, items, users,
                 interactions) -> None:
    """The six TSV tables of schemas/ecommerce.pbtxt, from the rows `_catalogue` and
    `_interactions` draw (bench/scale.py writes scaled-up catalogues with it)."""
    _tsv(out / "entities.tsv", ["entity_id", "name", "kind"], entities)
    _tsv(out / "entity_entity.tsv", ["child_id", "parent_id"], entity_entity)
    _tsv(out / "items.tsv", ["item_id", "title", "description", "price"], items)
    _tsv(out / "item_entity.tsv", ["item_id", "entity_id", "relation"], item_entity)
    _tsv(out / "users.tsv", ["user_id", "age_band", "region"], users)
    _tsv(out / "interactions.tsv", ["user_id", "item_id", "event", "weight", "timestamp"],
         interactions)


def default_dir() -> Path:
    """The generated default data folder, generated (atomically) on first use."""
    target = cache_dir("data") / VERSION
    if not (target / "MANIFEST").is_file():
        with atomic_dir(target) as tmp:
            generate(tmp)
    return target
