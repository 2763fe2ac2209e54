-- Where citizens' NIK verification stands: pending rows are re-verified by `ehac reconcile`.
SELECT status, count() AS declarations
FROM ehac.declaration_verification
GROUP BY status
ORDER BY declarations DESC
