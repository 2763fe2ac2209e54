-- Why declarations were rejected downstream, by stable error code and field.
SELECT code, field, count() AS rejections
FROM ehac.rejections
ARRAY JOIN error_codes AS code, error_fields AS field
GROUP BY code, field
ORDER BY rejections DESC, code, field
LIMIT 10
