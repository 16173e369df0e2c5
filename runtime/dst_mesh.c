/* dst_mesh.c: the device mesh: world rank <-> coordinates over the axes
 * dp, tp, pp, ep, and one communicator per axis.
 *
 * Layout (Megatron-LM's order, see dst_comm.h): tp fastest, then ep, dp,
 * and pp slowest. Axis communicators come from dst_comm_split of the world
 * with color = the rank whose coordinate on that axis is 0 (so ranks that
 * share all other coordinates share a color) and key = the coordinate on
 * the axis (so the group rank equals the coordinate).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "dst.h"
#include "dst_comm.h"

/* Axes from fastest to slowest varying in the rank. */
static const DstAxis layout[DST_AXIS_COUNT] = {DST_AXIS_TP, DST_AXIS_EP, DST_AXIS_DP, DST_AXIS_PP};

const char *dst_axis_name(DstAxis a) {
  static const char *names[DST_AXIS_COUNT] = {"dp", "tp", "pp", "ep"};
  return (unsigned)a < DST_AXIS_COUNT ? names[a] : "?";
}

int dst_mesh_rank_from_coords(const int degree[DST_AXIS_COUNT], const int coord[DST_AXIS_COUNT]) {
  int rank = 0;
  for (int i = DST_AXIS_COUNT - 1; i >= 0; i--) {
    DstAxis a = layout[i];
    DST_CHECK(coord[a] >= 0 && coord[a] < degree[a], "%s coordinate %d of degree %d",
              dst_axis_name(a), coord[a], degree[a]);
    rank = rank * degree[a] + coord[a];
  }
  return rank;
}

void dst_mesh_coords_from_rank(const int degree[DST_AXIS_COUNT], int rank,
                               int coord[DST_AXIS_COUNT]) {
  DST_CHECK(rank >= 0, "rank %d", rank);
  for (int i = 0; i < DST_AXIS_COUNT; i++) {
    DstAxis a = layout[i];
    coord[a] = rank % degree[a];
    rank /= degree[a];
  }
  DST_CHECK(rank == 0, "rank beyond the mesh");
}

/* The rank with the coordinates of `rank` except those in mask set to 0:
 * a color shared exactly by the ranks that differ only on mask's axes. */
static int color_for(const DstMesh *m, unsigned mask) {
  int c[DST_AXIS_COUNT];
  memcpy(c, m->coord, sizeof c);
  for (int a = 0; a < DST_AXIS_COUNT; a++)
    if (mask & (1u << a)) c[a] = 0;
  return dst_mesh_rank_from_coords(m->degree, c);
}

DstMesh *dst_mesh_init(const int degree[DST_AXIS_COUNT]) {
  DST_CHECK(dst_comm_initialized(), "dst_mesh_init before dst_comm_init");
  DstComm *world = dst_comm_world();
  int launched = dst_comm_size(world);
  char msg[512], axes[160] = "";
  size_t n = 0;
  long long need = 1;
  for (int a = 0; a < DST_AXIS_COUNT; a++) {
    if (degree[a] < 1) {
      snprintf(msg, sizeof msg, "error: the mesh degree %s=%d must be at least 1",
               dst_axis_name((DstAxis)a), degree[a]);
      dst_comm_exit_all(DST_EXIT_INPUT, msg);
    }
    need *= degree[a];
    if (need > INT_MAX) {
      snprintf(msg, sizeof msg, "error: the plan needs more than %d ranks", INT_MAX);
      dst_comm_exit_all(DST_EXIT_INPUT, msg);
    }
    if (degree[a] > 1 && n < sizeof axes) {
      int k = snprintf(axes + n, sizeof axes - n, "%s%s=%d", n ? " x " : "",
                       dst_axis_name((DstAxis)a), degree[a]);
      if (k > 0) n += (size_t)k;
    }
  }
  if (need != launched) {
    char paren[180] = "";
    if (axes[0]) snprintf(paren, sizeof paren, " (%s)", axes);
    char how[64];
    if (launched == 1 && dst_comm_backend() == DST_COMM_BACKEND_LOCAL)
      snprintf(how, sizeof how, "run it with mpirun -np %lld", need);
    else
      snprintf(how, sizeof how, "mpirun -np %d", launched);
    snprintf(msg, sizeof msg, "error: the plan needs %lld rank%s%s but %d %s launched (%s)", need,
             need == 1 ? "" : "s", paren, launched, launched == 1 ? "was" : "were", how);
    dst_comm_exit_all(DST_EXIT_INPUT, msg);
  }
  DstMesh *m = dst_calloc(1, sizeof *m, DST_MEM_OTHER, "mesh");
  memcpy(m->degree, degree, sizeof m->degree);
  m->world = world;
  m->rank = dst_comm_rank(world);
  m->size = launched;
  dst_mesh_coords_from_rank(m->degree, m->rank, m->coord);
  for (int a = 0; a < DST_AXIS_COUNT; a++) {
    m->axis[a] =
        dst_comm_split(world, color_for(m, 1u << a), m->coord[a], dst_axis_name((DstAxis)a));
    DST_CHECK(dst_comm_size(m->axis[a]) == degree[a] && dst_comm_rank(m->axis[a]) == m->coord[a],
              "axis %s: group rank %d of %d, coordinate %d of %d", dst_axis_name((DstAxis)a),
              dst_comm_rank(m->axis[a]), dst_comm_size(m->axis[a]), m->coord[a], degree[a]);
  }
  return m;
}

void dst_mesh_free(DstMesh *m) {
  if (!m) return;
  for (int a = DST_AXIS_COUNT - 1; a >= 0; a--) dst_comm_free(m->axis[a]);
  dst_free(m);
}

DstComm *dst_mesh_comm(const DstMesh *m, DstAxis a) {
  DST_CHECK((unsigned)a < DST_AXIS_COUNT, "axis %d", (int)a);
  return m->axis[a];
}

DstComm *dst_mesh_group(DstMesh *m, unsigned mask, const char *name) {
  DST_CHECK(mask < (1u << DST_AXIS_COUNT), "axis mask 0x%x", mask);
  /* key = world rank: members are ordered by the layout (tp fastest). */
  return dst_comm_split(m->world, color_for(m, mask), m->rank, name);
}
