-- The linkage review queue and the pairs kept apart (issue 18 point 4;
-- gateway/src/subjects/review.rs).
--
-- `link_reviews`: pairs of identities the match rule did not link but that
-- came close (`MatchScore::needs_review`), on different subjects when found.
-- `identity_a` is the older of the two (smaller id), so a pair is queued once.
-- An administrator decides each: `accepted` merges their subjects (a
-- `subject_merges` row naming the review), `rejected` writes `link_apart`.
-- No column holds an identifier: ids, a score, codes and times.
--
-- `link_apart`: pairs that must never share a subject again, from a rejected
-- review or an unmerge. Registration never merges two subjects with a pair
-- across them; an unmerge re-derives the subject without the pair's link.
-- `identity_a` < `identity_b` as for reviews.

CREATE TABLE link_reviews (
    id          TEXT PRIMARY KEY NOT NULL,             -- UUID v7
    identity_a  TEXT NOT NULL REFERENCES identities (id),
    identity_b  TEXT NOT NULL REFERENCES identities (id),
    score       DOUBLE PRECISION NOT NULL,             -- the rule's score (0..0.5: not a match)
    created_at  BIGINT NOT NULL,                       -- unix seconds
    decision    TEXT,                                  -- NULL while open; accepted, rejected
    decided_by  TEXT,                                  -- partner id (later: the person)
    decided_at  BIGINT,
    UNIQUE (identity_a, identity_b),
    CHECK (identity_a < identity_b),
    CHECK (decision IS NULL OR decision IN ('accepted', 'rejected'))
);
CREATE INDEX link_reviews_open ON link_reviews (created_at, id) WHERE decision IS NULL;
CREATE INDEX link_reviews_b ON link_reviews (identity_b);

CREATE TABLE link_apart (
    identity_a  TEXT NOT NULL REFERENCES identities (id),
    identity_b  TEXT NOT NULL REFERENCES identities (id),
    cause       TEXT NOT NULL,                         -- review, unmerge
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (identity_a, identity_b),
    CHECK (identity_a < identity_b)
);
CREATE INDEX link_apart_b ON link_apart (identity_b);

-- A merge made by accepting a review names it (NULL: a bridging identity).
ALTER TABLE subject_merges ADD COLUMN review_id TEXT REFERENCES link_reviews (id);

-- The cluster an identity was in before a merge of partner clusters moved it
-- (NULL: it never moved, its cluster is its own). An unmerge that splits the
-- merged cluster gives the split-off part this id back, and so the very
-- pseudonyms it had (subjects/review.rs). Written only when a cluster moves.
ALTER TABLE identities ADD COLUMN home_cluster_id TEXT;
ALTER TABLE identities ADD COLUMN home_cbo_cluster_id TEXT;
