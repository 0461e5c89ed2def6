"""Probabilistic linkage over keyed tokens and keyed similarity encodings.

The steps, each its own module: ``encode`` (identifiers to an ``EncodedRecord``,
at the edge where identifiers are still in clear), ``blocking`` (which pairs
are worth comparing), ``compare`` (per-field levels of a pair), ``model``
(Fellegi-Sunter weights estimated by EM, bands, estimated quality), ``cluster``
(subjects from matched pairs, guarded against chaining), ``engine`` (all of
them in order, in one batch or incrementally). Nothing here sees HTTP or SQL,
and nothing after ``encode`` sees an identifier.
"""
