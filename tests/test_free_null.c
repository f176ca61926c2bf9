/*
  Every destructor accepts NULL and does nothing (serd's test_free_null.c).
*/
#include <flitzi/bank.h>
#include <flitzi/engine.h>
#include <flitzi/ring.h>
#include <flitzi/sample.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void
test_free_null(void** state)
{
  (void)state;

  fl_sample_free(NULL);
  fl_ring_free(NULL);
  fl_bank_free(NULL);
  fl_engine_free(NULL);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_free_null),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
