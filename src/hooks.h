/*-------------------------------------------------------------------------
 *
 * hooks.h
 *	  The statement hooks (hooks.c), which call each capability in turn.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PERFKIT_HOOKS_H
#define PERFKIT_HOOKS_H

extern void pk_install_statement_hooks(void);

#endif							/* PERFKIT_HOOKS_H */
