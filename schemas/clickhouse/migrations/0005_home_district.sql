-- The home district (issue 14): the six-digit Kemendagri code of the traveller's kecamatan, from
-- the NIK, the finest region analysts get (province and regency are names). Empty for
-- foreigners, and for rows stored before this migration (their NIK is in ehac_pii only, and
-- copying it back through the analyst database is what this schema avoids).
ALTER TABLE ehac.declarations ADD COLUMN home_district_code String DEFAULT '' AFTER home_regency;
