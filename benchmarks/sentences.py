"""English sentences made from templates over word lists kept here, so distillation needs no download.

`sentences(n, seed)` draws n distinct sentences; different seeds give (almost) disjoint sets, so a
held-apart evaluation set never appears in training. The topics are varied on purpose (people,
places, devices, weather, food, science, sport), so that nearest-neighbour rankings among the
sentences mean something.
"""

from __future__ import annotations

import random

PEOPLE = ["my sister", "the teacher", "an old farmer", "the engineer", "a young doctor", "our neighbour", "the pilot",
          "a tired student", "the chef", "my grandfather", "the mayor", "a famous singer", "the nurse", "two children",
          "the police officer", "a software developer", "the librarian", "my best friend", "the coach", "a tourist"]
PLACES = ["in the park", "at the station", "near the river", "in a small village", "at the airport", "in the kitchen",
          "on the mountain", "at the beach", "in the library", "downtown", "in the hospital", "at the stadium",
          "in the garden", "on the bus", "at the market", "in the laboratory", "at school", "in the office"]
ACTIONS = ["reads a long novel", "fixes a broken bicycle", "cooks a spicy soup", "paints the old fence",
           "plays the guitar", "waits for the delayed train", "writes a letter", "repairs the phone screen",
           "teaches a maths class", "runs a marathon", "plants tomatoes", "takes photographs of birds",
           "sells fresh vegetables", "debugs a slow program", "cleans the windows", "orders a coffee",
           "studies for the exam", "feeds the hungry cat", "builds a wooden table", "watches the football match"]
TIMES = ["every morning", "on Sunday", "after dinner", "late at night", "during the holidays", "before work",
         "in the winter", "at noon", "twice a week", "yesterday"]
THINGS = ["the new phone", "this laptop", "the battery", "the camera", "the coffee machine", "the old car",
          "the washing machine", "this tablet", "the smart watch", "the printer", "the heater", "the router"]
QUALITIES = ["is surprisingly fast", "gets hot very quickly", "stopped working after a week", "is too expensive",
             "makes a strange noise", "lasts all day", "is easy to repair", "feels cheap", "has a bright screen",
             "crashes when it updates", "saves a lot of energy", "was a great bargain"]
WEATHER = ["Heavy rain", "A cold wind", "Thick fog", "Bright sunshine", "A sudden storm", "Light snow", "A heat wave"]
EFFECTS = ["closed the roads", "delayed every flight", "kept everyone indoors", "brought people to the beach",
           "flooded the old town", "ruined the harvest", "cancelled the concert", "made the streets slippery"]
FOODS = ["fresh bread", "spicy noodles", "chocolate cake", "grilled fish", "vegetable soup", "apple pie", "rice with beans",
         "cheese pizza", "lemon tea", "roasted chicken"]
OPINIONS = ["tastes wonderful", "is too salty", "smells delicious", "is my favourite meal", "is hard to cook well",
            "is cheap and healthy", "reminds me of home", "was cold when it arrived"]
SCIENCE = ["The telescope", "The new vaccine", "A quantum computer", "The satellite", "The experiment", "The neural network",
           "The compiler", "The rover on Mars", "The solar panel", "The microscope"]
FINDINGS = ["found signs of water", "failed the safety test", "measured the temperature of the star",
            "runs twice as fast as before", "needs much less power", "produced surprising results",
            "detected a faint signal", "was launched this morning", "learned to translate speech"]
TEAMS = ["Our team", "The home side", "The national team", "The youth squad", "The visiting club", "The champions"]
RESULTS = ["won the match in extra time", "lost the final on penalties", "scored three goals in the first half",
           "played badly in the rain", "signed a new striker", "celebrated with the fans", "drew against the leaders"]

TEMPLATES = [
    lambda r: f"{r.choice(PEOPLE).capitalize()} {r.choice(ACTIONS)} {r.choice(PLACES)} {r.choice(TIMES)}.",
    lambda r: f"{r.choice(THINGS).capitalize()} {r.choice(QUALITIES)}.",
    lambda r: f"{r.choice(PEOPLE).capitalize()} says that {r.choice(THINGS)} {r.choice(QUALITIES)}.",
    lambda r: f"{r.choice(WEATHER)} {r.choice(EFFECTS)} {r.choice(TIMES)}.",
    lambda r: f"The {r.choice(FOODS)} {r.choice(PLACES)} {r.choice(OPINIONS)}.",
    lambda r: f"{r.choice(SCIENCE)} {r.choice(FINDINGS)}.",
    lambda r: f"{r.choice(TEAMS)} {r.choice(RESULTS)}.",
    lambda r: f"{r.choice(PEOPLE).capitalize()} thinks {r.choice(FOODS)} {r.choice(OPINIONS)}.",
]


def sentences(n: int, seed: int, exclude: set[str] | None = None) -> list[str]:
    """n distinct generated sentences, none of them in `exclude`."""
    rng = random.Random(seed)
    out: list[str] = []
    seen = set(exclude or ())
    while len(out) < n:
        text = rng.choice(TEMPLATES)(rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out
