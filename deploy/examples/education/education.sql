-- The education department's front-end database, as its own ETL would fill it: one view the
-- catalogue file's query reads. Synthetic people with valid check characters (GB 11643).
CREATE TABLE IF NOT EXISTS V_XLXW (
  SFZH TEXT NOT NULL,   -- 身份证号
  XM   TEXT NOT NULL,   -- 姓名
  YXMC TEXT NOT NULL,   -- 院校名称
  ZYMC TEXT NOT NULL,   -- 专业名称
  CC   TEXT NOT NULL,   -- 层次
  BYRQ TEXT NOT NULL,   -- 毕业日期
  ZSBH TEXT NOT NULL,   -- 证书编号
  GXSJ TEXT NOT NULL    -- 更新时间 (Beijing time)
);
DELETE FROM V_XLXW;
INSERT INTO V_XLXW VALUES
  ('350505199203150026', '林静', '福建医科大学', '护理学', '本科', '2014-06-30', '103921201405000123', '2025-03-01 09:00:00'),
  ('350505199203150026', '林静', '福建医科大学', '护理', '硕士研究生', '2017-06-30', '103921201702000045', '2025-03-01 09:00:00'),
  ('350102198807070013', '陈志强', '福州大学', '土木工程', '本科', '2010-07-01', '103861201005000987', '2024-11-20 16:30:00');
