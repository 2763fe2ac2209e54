-- Where citizens' NIK verification stands: pending rows are re-verified by `ehac reconcile`.
-- Small counts suppressed: a status with 1 to {suppress_below} - 1 declarations shows NULL.
SELECT status,
       if(n > 0 AND n < {suppress_below}, NULL, n) AS declarations,
       n > 0 AND n < {suppress_below} AS suppressed_cells
FROM
(
    SELECT status, count() AS n
    FROM ehac.declaration_verification
    GROUP BY status
)
ORDER BY n DESC, status
