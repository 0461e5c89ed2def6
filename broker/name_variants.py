"""Common UK given-name variants and nicknames, for the fuzzier match keys only.

:func:`canonical_given_name` maps a normalised given name (the output of
:func:`broker.normalise.normalise_name`) to the one name of its group, so that
"Bill", "Billy" and "Will" all become ``william``. Only the
``variant_dob_postcode`` match key uses it; exact keys hash the name as it was
given. The table is small on purpose and follows five rules:

1. A group holds one formal name and forms of that name only: its short forms
   and pet forms (``bill``), and other spellings of the same name, said the
   same way (``katherine`` beside ``catherine``). Two names that parents give
   as separate names are never in one group, even when one grew from the
   other: ``liam`` is not ``william``, ``jack`` is neither ``john`` nor
   ``jacob``, ``isabella`` is not ``isabel``.
2. A short form in common use for more than one name stays as it is
   (:data:`AMBIGUOUS` lists them with the names they stand for). Boy/girl
   pairs matter most, because parents give them to twins and twins share a
   family name, a date of birth and a postcode: ``sam`` (Samuel, Samantha),
   ``alex`` (Alexander, Alexandra), ``ollie`` (Oliver, Olivia), ``charlie``
   (Charles, Charlotte), ``georgie``, ``jo``, ``chris`` and the rest. Mapping
   one of them would let a record of one twin, sent under the short form,
   join the other twin.
3. A spelling kept for the other sex stays out of a group: ``bobbie`` and
   ``billie`` (chiefly girls) are not ``bobby`` and ``billy``; ``dani`` is not
   ``dan``; ``frances`` is not ``francis``.
4. Where a name is often the first of several given names shared by brothers,
   who are then known by the next one, its spellings are not merged: the
   spellings of Muhammad (``mohammed``, ``muhammad``, ``mohammad`` and more)
   each stay as written, because two brothers, twins among them, recorded
   under the first given name alone would otherwise share a token whenever one
   agency spells it differently.
5. Every entry is already normalised (lower-case letters, nothing else), and
   a group's formal name maps to itself, so the function is idempotent.

Sources of judgement: common present-day UK usage for children and young
people; the ONS "Baby names in England and Wales" lists, to see which short
forms are registered as names in their own right and for which sex; and the
linkage hazard the design names (a wrong merge of two children is a
safeguarding harm). It is judgement, not a data set: change it in review, and
keep the tests' "must stay distinct" pairs passing. ``docs/name-variants.md``
says the same for readers who do not read Python.

What it does not do: spelling correction or phonetic matching (Soundex,
Metaphone), family names, middle names, compound given names (the normalised
form joins parts, so ``maryjane`` is looked up whole and is left as it is),
transliterations between scripts, or guessing sex from a name.
"""

from __future__ import annotations

from types import MappingProxyType

#: Formal name -> its other spellings and short forms. One line per group; a comment
#: where a form was left out says why.
GROUPS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        # Boys' names
        "alexander": ("alec", "xander"),  # not alex, lex, sandy, sasha: Alexandra's too
        "alfred": ("alf", "alfie"),  # not fred, freddie: Frederick's too
        "andrew": ("andy",),  # not drew, andi: Drew and Andrea
        "anthony": ("antony", "tony", "ant"),  # not toni: Antonia
        "benjamin": ("benji", "benjy"),  # not ben, benny: Benedict, Bennett, Reuben
        "callum": ("calum",),
        "charles": ("chas", "chaz"),  # not charlie: Charlotte
        "daniel": ("dan", "danny"),  # not dani, danni, dannie: Danielle
        "david": ("dave", "davey", "davy", "dai"),
        "douglas": ("doug", "dougie"),
        "gregory": ("greg",),
        "jacob": ("jake",),  # not jack: a name of its own, and John's
        "james": ("jim", "jimmy", "jimmie"),  # not jamie (a name of its own, for either sex)
        "john": ("johnny", "johnnie"),  # not jack, jon, jonny: Jonathan's too
        "joseph": ("joe",),  # not jo, joey: Joanne, Josephine
        "joshua": ("josh",),
        "kenneth": ("ken", "kenny"),
        "lawrence": ("laurence", "larry"),  # not laurie: Laura, Lauren
        "matthew": ("mathew", "matt", "matty"),  # not mattie: Matilda
        "michael": ("mike", "mikey", "mick", "micky", "mickey"),
        "nicholas": ("nicolas", "nick"),  # not nicky, nikki, nic, nico: Nicola, Nicole
        "patrick": ("paddy",),  # not pat, patsy: Patricia
        "peter": ("pete",),
        "richard": ("rich", "richie", "dick", "dickie"),  # not rick, ricky: Eric, Frederick
        "robert": ("rob", "robby", "robbie", "bob", "bobby"),  # not bobbie: Roberta
        "stephen": ("steven", "steve"),  # not steph, stevie: Stephanie
        "thomas": ("tom", "tommy"),
        "timothy": ("tim", "timmy"),
        "william": ("will", "willy", "willie", "bill", "billy"),  # not liam; not billie
        "zachary": ("zach", "zack"),  # not zac, zak: Isaac, Zakariya
        # Girls' names
        "abigail": ("abbie", "abby", "abbey", "abi", "abbi"),
        "catherine": (  # not kath, kathy, cath, cathy, kat, kitty: Kathleen's too
            "katherine",
            "katharine",
            "kathryn",
            "catharine",
            "cathryn",
            "kate",
            "katie",
            "katy",
        ),
        "charlotte": ("lottie", "lotty"),  # not charlie: Charles
        "deborah": ("debra", "debbie", "debby", "debs", "deb"),
        "elizabeth": ("liz", "lizzie", "lizzy", "betty", "betsy", "bess", "bessie"),  # not beth
        "isabel": ("isabelle", "isobel"),  # not isabella (a name of its own), izzy: Isaac
        "jennifer": ("jen", "jenny", "jenni", "jennie"),  # not jenna (a name of its own)
        "josephine": ("josie",),  # not jo: Joseph, Joanne
        "kimberley": ("kimberly",),  # not kim: a name of its own, for either sex
        "madeleine": ("madeline", "madelaine"),  # not maddie: Madison
        "margaret": ("maggie", "peggy"),  # not meg: Megan
        "natasha": ("tasha", "tash"),  # not nat: Natalie, Nathan
        "olivia": ("liv", "livvy", "livvie"),  # not ollie, olly: Oliver
        "patricia": ("trish", "tricia", "trisha"),  # not pat, patsy: Patrick
        "penelope": ("penny",),
        "rebecca": ("becky", "becca", "beckie", "bex"),
        "sarah": ("sara",),
        "teresa": ("theresa",),  # not tess, terri: Tessa, Terence
        "victoria": ("vicky", "vicki", "vickie", "vikki"),  # not tori (a name of its own)
        "zoe": ("zoey",),  # "Zoë" is already zoe once normalised
    }
)

_CANONICAL = MappingProxyType(
    {form: formal for formal, forms in GROUPS.items() for form in (formal, *forms)}
)

#: Short forms in common use for more than one name, each with the names it stands
#: for (as :func:`canonical_given_name` gives them; the form itself where it is also a
#: name of its own). None of them is mapped.
AMBIGUOUS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "alex": ("alexander", "alexandra", "alexis"),
        "ali": ("alistair", "alison", "alice", "ali"),
        "andi": ("andrew", "andrea"),
        "bella": ("isabella", "annabel", "arabella"),
        "ben": ("benjamin", "benedict", "bennett", "reuben"),
        "benny": ("benjamin", "benedict"),
        "bert": ("albert", "herbert", "robert", "bertram", "gilbert"),
        "bertie": ("albert", "herbert", "robert", "bertram"),
        "beth": ("elizabeth", "bethany"),
        "cam": ("cameron", "camilla", "campbell"),
        "cath": ("catherine", "kathleen"),
        "cathy": ("catherine", "kathleen"),
        "charlie": ("charles", "charlotte"),
        "charley": ("charles", "charlotte"),
        "chris": ("christopher", "christine", "christina", "christian"),
        "chrissy": ("christine", "christina", "christopher"),
        "dani": ("daniel", "danielle"),
        "danni": ("daniel", "danielle"),
        "drew": ("andrew", "drew"),
        "ed": ("edward", "edmund", "edwin", "edgar"),
        "eddie": ("edward", "edmund", "edwin", "edgar"),
        "ellie": ("eleanor", "elizabeth", "ellen", "gabrielle", "ellie"),
        "fran": ("frances", "francesca", "francis"),
        "frank": ("francis", "franklin", "frank"),
        "frankie": ("francis", "frances", "francesca"),
        "fred": ("frederick", "alfred", "wilfred"),
        "freddie": ("frederick", "alfred", "wilfred", "frederica"),
        "georgie": ("george", "georgia", "georgina"),
        "gerry": ("gerald", "gerard", "geraldine"),
        "hal": ("henry", "harold"),
        "harry": ("henry", "harold", "harrison", "harry"),
        "izzy": ("isabel", "isabella", "isaac", "isadora"),
        "jack": ("john", "jacob", "jackson", "jack"),
        "jackie": ("jacqueline", "jack", "jackson"),
        "jamie": ("james", "jamie"),
        "jay": ("jayden", "jason", "james", "jacob"),
        "jerry": ("jeremy", "gerald", "gerard"),
        "jess": ("jessica", "jesse"),
        "jessie": ("jessica", "jesse", "janet"),
        "jo": ("joseph", "joanne", "joanna", "josephine", "jonathan"),
        "joey": ("joseph", "josephine", "joanna"),
        "jon": ("john", "jonathan"),
        "jonny": ("john", "jonathan"),
        "kat": ("catherine", "katrina", "katya"),
        "kath": ("catherine", "kathleen"),
        "kathy": ("catherine", "kathleen"),
        "kim": ("kimberley", "kim"),
        "kit": ("christopher", "catherine"),
        "kitty": ("catherine", "kathleen"),
        "laurie": ("lawrence", "laura", "lauren"),
        "lenny": ("leonard", "lennon", "leonardo"),
        "leo": ("leonard", "leonardo", "leon", "leo"),
        "lex": ("alexander", "alexandra", "alexis"),
        "lexi": ("alexandra", "alexis", "alexa"),
        "libby": ("elizabeth", "liberty", "olivia"),
        "lou": ("louis", "louise", "louisa"),
        "maddie": ("madeleine", "madison"),
        "maddy": ("madeleine", "madison"),
        "max": ("maximilian", "maxwell", "maxine", "max"),
        "meg": ("margaret", "megan"),
        "mel": ("melanie", "melissa", "melvin"),
        "millie": ("amelia", "emily", "millicent", "camilla"),
        "mo": ("muhammad", "maurice", "maureen"),
        "nat": ("nathan", "nathaniel", "natalie", "natasha"),
        "nate": ("nathan", "nathaniel"),
        "ned": ("edward", "edmund"),
        "nic": ("nicholas", "nicola", "nicole"),
        "nicky": ("nicholas", "nicola", "nicole"),
        "nikki": ("nicholas", "nicola", "nicole"),
        "ollie": ("oliver", "olivia"),
        "olly": ("oliver", "olivia"),
        "pat": ("patrick", "patricia"),
        "patsy": ("patrick", "patricia"),
        "rick": ("richard", "frederick", "eric", "derrick"),
        "ricky": ("richard", "frederick", "eric", "derrick"),
        "sam": ("samuel", "samantha"),
        "sammie": ("samuel", "samantha"),
        "sammy": ("samuel", "samantha"),
        "sandy": ("alexander", "alexandra", "sandra"),
        "sasha": ("alexander", "alexandra", "sasha"),
        "steph": ("stephen", "stephanie"),
        "stevie": ("stephen", "stephanie"),
        "ted": ("edward", "theodore", "edmund"),
        "teddy": ("edward", "theodore", "edmund"),
        "terry": ("terence", "teresa"),
        "tess": ("teresa", "tessa"),
        "theo": ("theodore", "theodora", "theo"),
        "zac": ("zachary", "isaac"),
        "zak": ("zachary", "isaac", "zakariya"),
    }
)

#: Pairs of given names that must never share a canonical form: names parents give
#: as separate names, often to twins, that a careless table would merge.
MUST_STAY_DISTINCT: tuple[tuple[str, str], ...] = (
    ("samuel", "samantha"),
    ("alexander", "alexandra"),
    ("oliver", "olivia"),
    ("charles", "charlotte"),
    ("george", "georgia"),
    ("george", "georgina"),
    ("daniel", "danielle"),
    ("nicholas", "nicola"),
    ("christian", "christina"),
    ("christopher", "christine"),
    ("joseph", "josephine"),
    ("joseph", "joanne"),
    ("francis", "frances"),
    ("louis", "louise"),
    ("stephen", "stephanie"),
    ("patrick", "patricia"),
    ("robert", "roberta"),
    ("andrew", "andrea"),
    ("jesse", "jessica"),
    ("jack", "james"),
    ("jack", "john"),
    ("jack", "jacob"),
    ("jake", "jack"),
    ("william", "liam"),
    ("henry", "harry"),
    ("isabel", "isabella"),
    ("catherine", "kathleen"),
    ("catherine", "caitlin"),
    ("sophie", "sophia"),
    ("louis", "lewis"),
    ("billy", "billie"),
    ("bobby", "bobbie"),
    ("danny", "dani"),
    ("muhammad", "mohammed"),
    ("muhammad", "mohammad"),
)


def canonical_given_name(normalised_name: str) -> str:
    """The group name of a normalised given name, or the name itself when it has none.

    Pure and total over every string: a name not in the table (any script, any
    length) comes back unchanged, and so does a group's own name, so applying
    it twice gives what applying it once does. Pass the output of
    ``normalise_name``; other text is looked up as it is and will not match.
    """
    return _CANONICAL.get(normalised_name, normalised_name)
