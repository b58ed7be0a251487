/*
 * sanitizer_probe.c - can a sanitized program start on this machine?
 *
 * Built (as ray_sanitizer_probe) only when RAY_SANITIZE is set;
 * cmake/sanitizer_launcher.sh runs it before `make asan` / `make tsan` start
 * ctest. gcc 12's sanitizer runtimes can fail at start-up when the kernel's
 * mmap ASLR entropy (vm.mmap_rnd_bits) is above 28 bits: TSan aborts with
 * "FATAL: ThreadSanitizer: unexpected memory mapping", ASan may spin on
 * "AddressSanitizer:DEADLYSIGNAL". Then ctest runs under
 * `setarch $(uname -m) -R` (ASLR off for it and its children). Threads and a
 * mutex, so the sanitizer's thread support is exercised too.
 */
#include <pthread.h>
#include <stdio.h>

static int counter;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *bump(void *arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  counter++;
  pthread_mutex_unlock(&lock);
  return NULL;
}

int main(void) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    if (pthread_create(&t[i], NULL, bump, NULL) != 0) return 2;
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  printf("sanitizer probe ok (%d threads)\n", counter);
  return counter == 4 ? 0 : 1;
}
