"""Name tables for the synthetic town: a mix that looks like an English town's young people.

Includes names with apostrophes, hyphens and diacritics on purpose, because
those are where agencies' systems disagree.
"""

from __future__ import annotations

# fmt: off
GIVEN_FEMALE = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia",
    "Grace", "Freya", "Florence", "Willow", "Evie", "Poppy", "Ella", "Chloé", "Zoë", "Siân",
    "Aoife", "Niamh", "Saoirse", "Ffion", "Cerys", "Eilidh", "Amira", "Aisha", "Fatima",
    "Zainab", "Maryam", "Priya", "Ananya", "Simran", "Harpreet", "Zofia", "Julia", "Maja",
    "Chantelle", "Keisha", "Shanice", "Adaeze", "Chiamaka", "Ama", "Nia", "Leila", "Yasmin",
    "Mary-Jane", "Anne-Marie", "Renée",
)
GIVEN_MALE = (
    "Oliver", "George", "Noah", "Arthur", "Leo", "Harry", "Oscar", "Jack", "Charlie", "Jacob",
    "Thomas", "William", "James", "Alfie", "Joshua", "Daniel", "Ryan", "Callum", "Liam",
    "Cian", "Rhys", "Dylan", "Owain", "Ewan", "Mohammed", "Muhammad", "Ibrahim", "Yusuf",
    "Ali", "Omar", "Arjun", "Rohan", "Harjit", "Jakub", "Kacper", "Szymon", "Tyrone", "Jerome",
    "Marcus", "Kwame", "Chidi", "Emeka", "Tunde", "Kofi", "Bilal", "Hamza", "Jean-Luc", "Zak",
    "Reece", "Kai",
)
FAMILY = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards",
    "Hughes", "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel", "Khan", "Ahmed", "Hussain",
    "Begum", "Ali", "Singh", "Kaur", "Shah", "O'Brien", "O'Connor", "McCarthy", "Murphy",
    "MacDonald", "McLeod", "Kowalski", "Nowak", "Wiśniewski", "Okafor", "Adeyemi", "Mensah",
    "Boateng", "Campbell", "Francis", "Grant", "Smith-Jones", "Lloyd-Evans", "Al-Sayed",
    "D'Souza", "Nguyen", "Yılmaz", "Müller", "Ó Súilleabháin",
)
# Short forms an agency may record instead of the registered name.
NICKNAMES = {
    "Olivia": "Liv", "Isabella": "Bella", "Florence": "Flo", "Sophia": "Sophie",
    "Amelia": "Millie", "Oliver": "Ollie", "Thomas": "Tom", "William": "Will", "James": "Jim",
    "Joshua": "Josh", "Daniel": "Dan", "Jacob": "Jake", "Mohammed": "Mo", "Muhammad": "Mo",
    "Alfie": "Alf", "Charlie": "Chaz", "Harry": "Haz", "Jakub": "Kuba",
}
STREETS = (
    "Elm Road", "Station Road", "Church Lane", "Victoria Street", "Mill Lane", "Park Avenue",
    "Queens Road", "The Crescent", "Canal Side", "Brook Close", "High Street", "Orchard Way",
)
# fmt: on
