/* Sensor readings (sensor.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "sensor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const double PI = 3.14159265358979323846;

int sensor_read(const char *path, double t, double *value, err_t *err)
{
    if (path == NULL) {
        double noise = (double)randombytes_uniform(1000001) / 1000000.0 - 0.5;
        *value = 20.0 + 5.0 * sin(2.0 * PI * t / 60.0) + 0.2 * noise;
        return 0;
    }
    char *text = read_file(path, 256, NULL);
    if (text == NULL)
        return err_set(err, "--sensor-file: cannot read %s: %s", path, strerror(errno));
    text[strcspn(text, " \t\r\n")] = '\0';
    int rc = parse_double(text, value) == 0 && isfinite(*value)
                 ? 0
                 : err_set(err, "--sensor-file: %s holds no number ('%.40s')", path, text);
    free(text);
    return rc;
}
