-- Issue 15: a consent has a discloser — the partner whose records it opens.
-- A consent attaches to the person, but opens only records held by the partner
-- that recorded it (42 CFR §2.31: a consent names the program that discloses);
-- a holder that wants to honour a consent the person gave elsewhere records its
-- own. The gateway sets discloser = recorded_by and refuses any other value, so
-- existing consents migrate with discloser = recorder. The empty default only
-- exists because a column added to a table with rows needs one; an empty
-- discloser matches no record's holder, so such a consent would open nothing.
ALTER TABLE consents ADD COLUMN discloser TEXT NOT NULL DEFAULT '';
UPDATE consents SET discloser = recorded_by;
