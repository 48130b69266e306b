/*
 * list.h
 *		A doubly-linked intrusive list, after PostgreSQL's lib/ilist.h
 *		dlist: each listed struct embeds a struct rlist_node, and the list
 *		is a ring through its struct rlist_head, so adding and removing a
 *		node take neither an allocation nor a search.
 *
 * A node in no list has NULL links (a zeroed struct, or after
 * rlist_delete()), which is how rlist_member() tells.  The structs go
 * without typedefs, as struct rlist_node and struct rlist_head.
 */
#ifndef TASKEVENTS_RELAY_LIST_H
#define TASKEVENTS_RELAY_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct rlist_node
{
	struct rlist_node *prev;
	struct rlist_node *next;
};

/* head.next is the first node, head.prev the last; both &head when empty */
struct rlist_head
{
	struct rlist_node head;
};

#define RLIST_STATIC_INIT(name) {{&(name).head, &(name).head}}

/* The struct of type `type` whose member `member` is the node ptr. */
#define rlist_container(type, member, ptr) \
	((type *) ((char *) (ptr) - offsetof(type, member)))

static inline void
rlist_init(struct rlist_head *h)
{
	h->head.prev = h->head.next = &h->head;
}

static inline bool
rlist_member(const struct rlist_node *n)
{
	return n->next != NULL;
}

/* Put n, which is in no list, after at (a node, or the head). */
static inline void
rlist_insert_after(struct rlist_node *at, struct rlist_node *n)
{
	n->prev = at;
	n->next = at->next;
	at->next->prev = n;
	at->next = n;
}

static inline void
rlist_push_head(struct rlist_head *h, struct rlist_node *n)
{
	rlist_insert_after(&h->head, n);
}

static inline void
rlist_push_tail(struct rlist_head *h, struct rlist_node *n)
{
	rlist_insert_after(h->head.prev, n);
}

/* Take n out of its list; nothing when it is in none. */
static inline void
rlist_delete(struct rlist_node *n)
{
	if (!rlist_member(n))
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

/* The node after n in h (NULL at the end, or when n is in no list). */
static inline struct rlist_node *
rlist_next(const struct rlist_head *h, const struct rlist_node *n)
{
	return n->next == &h->head ? NULL : n->next;
}

/* The first node of h, NULL when it is empty. */
static inline struct rlist_node *
rlist_first(const struct rlist_head *h)
{
	return rlist_next(h, &h->head);
}

#endif							/* TASKEVENTS_RELAY_LIST_H */
