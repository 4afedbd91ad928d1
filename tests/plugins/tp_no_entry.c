/* a shared object that is not a seckill plugin */
int tp_not_a_plugin(void);
__attribute__((visibility("default"))) int
tp_not_a_plugin(void)
{
    return 42;
}
