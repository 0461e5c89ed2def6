"""Name, nickname and street tables for :mod:`broker.synth`.

The tables are plain data so that the generator stays short. Names are the
kind a UK town's young people actually carry, across the heritages the
generator draws from, including apostrophes (O'Brien, D'Souza), hyphens
(Smith-Jones, Al-Hassan) and letters outside ASCII (Zoë, Siân, Łukasz),
because those are what break naive matching. Lists are tuples so their order,
and therefore every seeded draw from them, is fixed.
"""

from __future__ import annotations

from typing import NamedTuple


class Heritage(NamedTuple):
    """Given and family names of one heritage group, with its share of households."""

    weight: float
    female: tuple[str, ...]
    male: tuple[str, ...]
    family: tuple[str, ...]


# Shares are a rough picture of an English town's under-25s, not of any real place.
HERITAGES: dict[str, Heritage] = {
    "english": Heritage(
        0.49,
        ("Olivia", "Amelia", "Isla", "Ava", "Emily", "Isabella", "Mia", "Poppy", "Ella",
         "Lily", "Sophie", "Grace", "Evie", "Jessica", "Chloe", "Chloé", "Zoë", "Zoe", "Ruby",
         "Holly", "Megan", "Charlotte", "Ellie", "Lucy", "Katie", "Hannah", "Rebecca",
         "Abigail", "Eleanor", "Amber", "Paige", "Courtney", "Jade", "Leah", "Demi", "Lacey",
         "Katherine", "Elizabeth", "Renée", "Millie", "Freya", "Scarlett", "Mary-Jane",
         "Anne-Marie"),
        ("Oliver", "Jack", "Harry", "George", "Noah", "Charlie", "Jacob", "Thomas", "Oscar",
         "William", "James", "Joshua", "Alfie", "Leo", "Freddie", "Archie", "Ethan",
         "Harrison", "Joseph", "Samuel", "Daniel", "Lewis", "Liam", "Tyler", "Kyle", "Connor",
         "Jamie", "Ryan", "Nathan", "Alexander", "Benjamin", "Matthew", "Christopher",
         "Michael", "Jonathan", "Nicholas", "Robert", "Anthony", "Mason", "Logan", "Riley",
         "Bradley", "Reece", "Jayden"),
        ("Smith", "Jones", "Taylor", "Brown", "Wilson", "Johnson", "Davies", "Robinson",
         "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
         "Jackson", "Clarke", "Hughes", "Edwards", "Turner", "Hill", "Moore", "Cooper", "Ward",
         "Harris", "King", "Baker", "Lee", "Parker", "Cook", "Bennett", "Shaw", "Marshall",
         "Atkinson", "Barnes", "Holmes", "Fletcher", "Pearson", "Smith-Jones", "Taylor-Wood",
         "Lloyd-Evans"),
    ),
    "scottish": Heritage(
        0.04,
        ("Isla", "Eilidh", "Kirsty", "Morag", "Skye", "Iona", "Catriona", "Ailsa"),
        ("Callum", "Ewan", "Fraser", "Hamish", "Lachlan", "Finlay", "Ruaridh", "Angus"),
        ("MacDonald", "McLeod", "Campbell", "Stewart", "Robertson", "Fraser", "Murray",
         "Cameron", "Ross", "Sinclair", "Mackenzie", "McGregor", "Morrison", "Paterson"),
    ),
    "welsh": Heritage(
        0.05,
        ("Siân", "Cerys", "Ffion", "Seren", "Carys", "Gwenllian", "Rhiannon", "Elin",
         "Angharad", "Megan"),
        ("Rhys", "Dylan", "Osian", "Dafydd", "Gethin", "Iwan", "Llewelyn", "Cai", "Ioan"),
        ("Jones", "Williams", "Davies", "Evans", "Thomas", "Roberts", "Hughes", "Lewis",
         "Morgan", "Griffiths", "Price", "Pritchard", "Powell", "Llewellyn", "Bowen"),
    ),
    "irish": Heritage(
        0.06,
        ("Niamh", "Aoife", "Siobhán", "Róisín", "Caoimhe", "Saoirse", "Orla", "Ciara",
         "Aisling", "Clodagh"),
        ("Seán", "Ciarán", "Oisín", "Conor", "Cian", "Darragh", "Eoin", "Patrick", "Liam",
         "Fionn", "Niall"),
        ("O'Brien", "O'Connor", "O'Neill", "O'Sullivan", "Murphy", "Kelly", "Byrne", "Ryan",
         "Walsh", "McCarthy", "Doyle", "Gallagher", "Quinn", "Flanagan", "O'Reilly", "Nolan"),
    ),
    "south_asian": Heritage(
        0.11,
        ("Aisha", "Fatima", "Maryam", "Zara", "Amara", "Priya", "Anaya", "Simran", "Noor",
         "Inaaya", "Hafsa", "Zainab", "Aaliyah", "Harpreet"),
        ("Mohammed", "Muhammad", "Ali", "Aryan", "Arjun", "Rohan", "Gurpreet", "Hamza",
         "Ibrahim", "Zain", "Ayaan", "Rayyan", "Vihaan", "Kabir", "Yusuf"),
        ("Khan", "Ahmed", "Patel", "Hussain", "Ali", "Shah", "Iqbal", "Singh", "Sharma",
         "Rahman", "Chowdhury", "Akhtar", "Mahmood", "Miah", "Uddin", "Islam", "Kumar",
         "Gill", "D'Souza", "D'Cruz", "Begum", "Kaur"),
    ),
    "polish": Heritage(
        0.06,
        ("Zuzanna", "Julia", "Maja", "Lena", "Wiktoria", "Oliwia", "Zofia", "Katarzyna",
         "Małgorzata", "Agnieszka"),
        ("Jakub", "Kacper", "Łukasz", "Michał", "Paweł", "Szymon", "Filip", "Mateusz",
         "Aleksander", "Wojciech"),
        ("Nowak", "Wójcik", "Kaczmarek", "Mazur", "Krawczyk", "Zając", "Król", "Wróbel",
         "Pawlak", "Michalak", "Sikora", "Baran", "Szymczak"),
    ),
    "caribbean": Heritage(
        0.05,
        ("Shanice", "Tanisha", "Jada", "Keisha", "Aaliyah", "Imani", "Destiny", "Nia",
         "Amani", "Chantelle"),
        ("Tyrone", "Jermaine", "Marcus", "Dwayne", "Kai", "Malachi", "Elijah", "Isaiah",
         "Jaden", "Reuben", "Tyrese"),
        ("Campbell", "Brown", "Williams", "Thomas", "Francis", "Grant", "Henry", "Clarke",
         "Morgan", "Reid", "Gordon", "Douglas", "Samuels", "McKenzie", "Bailey"),
    ),
    "west_african": Heritage(
        0.06,
        ("Adaeze", "Chiamaka", "Folasade", "Ngozi", "Amara", "Abena", "Esther", "Precious",
         "Blessing", "Temitope", "Ifeoma"),
        ("Oluwaseun", "Oluwatobi", "Chukwuemeka", "Emeka", "Kwame", "Kofi", "Tobi", "David",
         "Samuel", "Daniel", "Joshua", "Femi", "Adebayo", "Tunde"),
        ("Okafor", "Adeyemi", "Mensah", "Owusu", "Boateng", "Adebayo", "Oyelaran", "Nwosu",
         "Eze", "Ogunleye", "Asante", "Danso", "Akinola", "Balogun"),
    ),
    "arabic": Heritage(
        0.05,
        ("Layla", "Mariam", "Noor", "Yasmin", "Salma", "Hana", "Leila", "Rania", "Amira",
         "Lina"),
        ("Omar", "Yusuf", "Ahmed", "Khalid", "Hassan", "Karim", "Tariq", "Adam", "Bilal",
         "Amir"),
        ("Al-Hassan", "Al-Amin", "El-Sayed", "Haddad", "Mansour", "Nasser", "Saleh",
         "Hamdan", "Abdullah", "Farouk", "Al-Rashid", "Osman", "Yousef"),
    ),
    "other": Heritage(
        0.03,
        ("Linh", "Mei", "Elif", "Ana", "Beatriz", "Zeynep", "Yuki", "Inês"),
        ("Minh", "Wei", "Emre", "Tiago", "João", "Jean-Luc", "Kenji", "Mehmet"),
        ("Nguyen", "Tran", "Chen", "Wong", "Yılmaz", "Demir", "Müller", "Silva", "Santos",
         "Costa", "Ó Súilleabháin"),
    ),
}  # fmt: skip

# The names people are actually called by, which is what police and ED staff
# often write down when a young person gives their name at the scene.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "Thomas": ("Tom", "Tommy"), "William": ("Will", "Billy"), "Alexander": ("Alex", "Xander"),
    "Mohammed": ("Mo",), "Muhammad": ("Mo",), "Daniel": ("Dan", "Danny"),
    "Joseph": ("Joe",), "Jessica": ("Jess",), "Rebecca": ("Becky", "Becca"),
    "Katherine": ("Kate", "Katie", "Kat"), "Elizabeth": ("Liz", "Beth", "Lizzie"),
    "Samuel": ("Sam", "Sammy"), "Oliver": ("Ollie",), "Benjamin": ("Ben",),
    "Jacob": ("Jake",), "Charlotte": ("Lottie", "Charlie"), "Olivia": ("Liv",),
    "Abigail": ("Abi", "Abby"), "Christopher": ("Chris",), "Matthew": ("Matt",),
    "Anthony": ("Tony", "Ant"), "Michael": ("Mike", "Mikey"), "Robert": ("Rob", "Bobby"),
    "Jonathan": ("Jon", "Jonny"), "Nicholas": ("Nick", "Nicky"), "Eleanor": ("Ellie",),
    "Isabella": ("Bella", "Izzy"), "Amelia": ("Millie", "Mia"), "Patrick": ("Paddy",),
    "Oluwaseun": ("Seun",), "Oluwatobi": ("Tobi",), "Chukwuemeka": ("Emeka",),
    "Aleksander": ("Olek",), "Katarzyna": ("Kasia",), "Małgorzata": ("Gosia",),
    "Wojciech": ("Wojtek",), "Rhiannon": ("Rhi",), "Dafydd": ("Dai",),
    "Gwenllian": ("Gwen",), "Callum": ("Cal",), "Joshua": ("Josh",),
    "Frederick": ("Freddie",), "Harrison": ("Harry",), "Jermaine": ("Jay",),
    "Nathan": ("Nate",), "Abdullah": ("Abdul",), "Ibrahim": ("Ibby",), "Zainab": ("Zee",),
    "Temitope": ("Temi",), "Folasade": ("Sade",), "Chiamaka": ("Amaka",),
}  # fmt: skip

STREET_STEMS: tuple[str, ...] = (
    "Church", "Mill", "Station", "Victoria", "Albert", "Park", "Queen", "King", "High",
    "North", "South", "West", "East", "Chapel", "School", "Meadow", "Orchard", "Willow",
    "Oak", "Ash", "Beech", "Elm", "Cedar", "Holly", "Rowan", "Hawthorn", "Brook", "River",
    "Canal", "Bridge", "Market", "Castle", "Abbey", "Priory", "Grange", "Manor", "Green",
    "Forge", "Foundry", "Colliery", "Wharf", "Tannery", "Ropewalk", "Sandy", "Stony",
    "Hillside", "Valley", "Moor", "Heath", "Riverside",
)  # fmt: skip
STREET_KINDS: tuple[str, ...] = (
    "Road", "Street", "Lane", "Close", "Avenue", "Way", "Court", "Gardens", "Crescent",
    "Drive", "Terrace", "Place", "Grove", "View",
)  # fmt: skip

# Neighbouring keys on a UK QWERTY keyboard, for realistic mistyped letters.
KEYBOARD_NEIGHBOURS: dict[str, str] = {
    "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij",
    "i": "uok", "o": "ipl", "p": "ol", "a": "qsz", "s": "adwx", "d": "sfec", "f": "dgrv",
    "g": "fhtb", "h": "gjyn", "j": "hkum", "k": "jli", "l": "ko", "z": "asx", "x": "zsc",
    "c": "xdv", "v": "cfb", "b": "vgn", "n": "bhm", "m": "nj",
}  # fmt: skip

# Letters with no NFKD decomposition, which ASCII-only systems still flatten.
ASCII_FOLDS: dict[str, str] = {
    "ł": "l", "Ł": "L", "ı": "i", "ø": "o", "Ø": "O", "đ": "d", "ß": "ss",
}  # fmt: skip
