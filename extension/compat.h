/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL major versions pg_taskevents
 *	  builds against, in one place.
 *
 * Supported: PostgreSQL 15 and later (15, 17 and 18 are tested in CI; 16
 * takes the same paths as 17 here).  Each difference is one macro below,
 * named after what it hides and keyed on PG_VERSION_NUM, so the C files
 * call one spelling on every version.  Include it after "postgres.h" (the
 * extension's files get it through taskevents.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKEVENTS_COMPAT_H
#define TASKEVENTS_COMPAT_H

#include "fmgr.h"

#if PG_VERSION_NUM < 150000
#error "pg_taskevents needs PostgreSQL 15 or later"
#endif

/*
 * Symbol visibility.  The library is compiled with -fvisibility=hidden, so
 * only what is marked PGDLLEXPORT is exported: the SQL-callable functions
 * (through PG_FUNCTION_INFO_V1), their info records, the module magic and
 * _PG_init.  PostgreSQL 16 and later define PGDLLEXPORT as
 * visibility("default") and mark the function itself in
 * PG_FUNCTION_INFO_V1; on 15 PGDLLEXPORT is empty on Linux and the macro
 * marks only the info record, so both are supplied here as 16 has them.
 */
#if PG_VERSION_NUM < 160000 && defined(__GNUC__) && !defined(WIN32)
#undef PGDLLEXPORT
#define PGDLLEXPORT __attribute__((visibility("default")))

#undef PG_FUNCTION_INFO_V1
#define PG_FUNCTION_INFO_V1(funcname) \
extern PGDLLEXPORT Datum funcname(PG_FUNCTION_ARGS); \
extern PGDLLEXPORT const Pg_finfo_record * CppConcat(pg_finfo_,funcname)(void); \
const Pg_finfo_record * \
CppConcat(pg_finfo_,funcname) (void) \
{ \
	static const Pg_finfo_record my_finfo = { 1 }; \
	return &my_finfo; \
} \
extern int no_such_variable

extern PGDLLEXPORT void _PG_init(void);
#endif

/*
 * ExecInsertIndexTuples() gained an eighth argument, onlySummarizing, in
 * PostgreSQL 16 (HOT updates that touch only summarizing indexes).  The
 * outbox is insert-only, so it is always false.
 */
#if PG_VERSION_NUM >= 160000
#define ExecInsertIndexTuplesCompat(rri, slot, estate, update, noDupErr, specConflict, arbiterIndexes) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (noDupErr), \
						  (specConflict), (arbiterIndexes), false)
#else
#define ExecInsertIndexTuplesCompat(rri, slot, estate, update, noDupErr, specConflict, arbiterIndexes) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (noDupErr), \
						  (specConflict), (arbiterIndexes))
#endif

#endif							/* TASKEVENTS_COMPAT_H */
