-- Where citizens' NIK verification stands: pending rows are re-verified by `ehac reconcile`.
-- Small counts suppressed: the published view holds a status of 1 to 10 declarations as NULL;
-- one below {suppress_below} is NULL here too.
SELECT status,
       if(isNull(declarations) OR (ifNull(declarations, 0) > 0 AND ifNull(declarations, 0) < {suppress_below}), NULL, declarations) AS declarations,
       isNull(declarations) OR (ifNull(declarations, 0) > 0 AND ifNull(declarations, 0) < {suppress_below}) AS suppressed_cells
FROM ehac.published_verification_by_status
ORDER BY declarations DESC, status
