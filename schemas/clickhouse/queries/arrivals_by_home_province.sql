-- Where arriving citizens live (from the NIK's district of issue).
SELECT home_province, count() AS travellers, round(avg(age_years), 1) AS mean_age
FROM ehac.declarations
WHERE home_province != ''
GROUP BY home_province
ORDER BY travellers DESC, home_province
LIMIT 10
