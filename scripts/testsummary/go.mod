module github.com/agentidp/agentidp/scripts/testsummary

go 1.26.0
