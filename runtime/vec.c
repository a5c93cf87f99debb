/*
 * vec.c -- the growable array's one out-of-line step: the growth (vec.h
 * says the rule: a failed growth changes nothing).
 */
#include "vec.h"

#include <stdint.h>
#include <string.h>

bool act_vec_grow_(void *vp, size_t *cap, size_t elem, size_t need) {
  void *old;
  memcpy(&old, vp, sizeof old); /* vp is a T **: read it as bytes, no aliasing */
  size_t ncap = *cap ? *cap : ACT_VEC_MIN;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2) return false;
    ncap *= 2;
  }
  if (ncap > SIZE_MAX / elem) return false;
  void *nv = realloc(old, ncap * elem);
  if (!nv) return false;
  memcpy(vp, &nv, sizeof nv);
  *cap = ncap;
  return true;
}
