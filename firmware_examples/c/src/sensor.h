/* The sensor loop's reading: a number from a file (re-read each time, e.g. a sysfs attribute) or a
 * synthetic sensor (a slow sine plus noise) when there is none. Single-threaded. */
#ifndef EDGE_SENSOR_H
#define EDGE_SENSOR_H

#include "util.h"

/* One reading; -1 and a message when the file cannot be read or holds no number. */
int sensor_read(const char *path, double t, double *value, err_t *err);

#endif
